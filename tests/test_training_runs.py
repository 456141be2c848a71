"""Tests for reading finished runs in benchmarks/training_runs.py."""

import math

from benchmarks import training_runs
from benchmarks.training_runs import (median, run_completed,
                                     steps_to_threshold)


def _write_evaluations(logdir, rows):
  logdir.mkdir(parents=True, exist_ok=True)
  lines = ['env_steps,eval/return,update_ms']
  lines += [f'{steps},{ret},50.0' for steps, ret in rows]
  (logdir / 'evaluations.csv').write_text('\n'.join(lines) + '\n')


def test_run_completed_needs_an_evaluation_at_the_budget(tmp_path):
  run = tmp_path / 'run'
  assert not run_completed(str(run), 5000)  # no directory
  _write_evaluations(run, [])
  assert not run_completed(str(run), 5000)  # header only
  _write_evaluations(run, [(1000, 10.0), (4000, 200.0)])
  assert not run_completed(str(run), 5000)  # stopped early
  _write_evaluations(run, [(1000, 10.0), (5000, 480.0)])
  assert run_completed(str(run), 5000)
  assert not run_completed(str(run), 8000)  # a longer budget


def test_steps_to_threshold_is_the_first_evaluation_at_or_above():
  rows = [{'env_steps': s, 'eval/return': r}
          for s, r in [(1000, 10.0), (2000, 475.0), (3000, 100.0)]]
  assert steps_to_threshold(rows, 475.0) == 2000
  assert steps_to_threshold(rows, 476.0) is None
  assert steps_to_threshold(rows, None) is None


def test_median_counts_never_reached_as_infinite():
  assert median([]) is None
  assert median([3.0, 1.0, 2.0]) == 2.0
  assert median([4.0, 1.0, 3.0, 2.0]) == 2.5
  assert median([1000.0, math.inf, math.inf]) == math.inf


def test_runs_sharing_the_cores_split_them(monkeypatch):
  monkeypatch.setattr(training_runs.os, 'cpu_count', lambda: 8)
  assert [training_runs.threads_per_run(p) for p in (1, 2, 3, 16)] == [
      8, 4, 2, 1]
  assert training_runs.threads_per_run(2, threads=6) == 6
  argv = training_runs.train_command('c.yaml', 'run', 3, ['a.b=1'],
                                     threads=4)
  assert argv[2:] == ['launch.train', '--config=c.yaml', '--logdir=run',
                      '--seed=3', '--noprogress', '--threads=4',
                      '--set=a.b=1']
