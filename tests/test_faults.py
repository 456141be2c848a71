"""The fault benchmark (benchmarks/faults.py), short: a real training run
killed with SIGKILL at random moments, a checkpoint damaged after every
kill (truncated, bit-flipped, state file deleted), resumed to the end from
a working directory outside the repository with the default relative
--logdir; every invariant of the benchmark must hold."""

from benchmarks import faults
from conftest import REPO_ROOT, SMALL_OVERRIDES

import os

RUN = list(SMALL_OVERRIDES) + [
    'run.total_env_steps=500', 'run.prefill_steps=100', 'warmup.steps=150',
    'run.checkpoint_seconds=1', 'run.eval_every=200', 'run.eval_episodes=2',
    'run.log_every=25', 'run.histogram_every=0', 'run.image_every=0']


def test_killed_damaged_and_resumed_run_keeps_every_invariant(tmp_path):
  report = faults.run_faults(
      rounds=3, damages=list(faults.DAMAGES), damage_every=1,
      config=os.path.join(REPO_ROOT, 'configs', 'cartpole.yaml'),
      overrides=RUN, max_kill_seconds=6.0, seed=3,
      workdir=str(tmp_path))
  faults.write_outputs(report, str(tmp_path / 'faults.json'))
  assert report['invariants'] and report['all_held'], report
  final = report['final']
  assert final['steps_on_disk'] == final['env_steps_counted'] == 500
  # The checks had something to check: runs resumed from checkpoints, and
  # checkpoints were damaged.
  assert any(r.get('resumed_from') for r in report['rounds']), report
  assert report['damages'], report
  assert (tmp_path / 'faults.png').exists()
