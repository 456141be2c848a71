r"""Fault benchmark: a training run killed with SIGKILL at random moments,
its checkpoints damaged between kills, and resumed to the end.

  python -m benchmarks.faults --rounds=10 \
      --output=benchmarks/results/faults.json

Each round starts `python -m launch.train` with the run's relative default
`--logdir` (`logdir/<env>-seed<seed>`) from a working directory outside
the repository, kills it at a random moment (while starting up or while
training), checks the directory, and may damage the newest checkpoint
before the next round (cycling through --damage: truncate its data file,
flip bits in it, delete TF's state file). A last round runs to the end,
then `launch.evaluate` and `launch.export` run on the finished directory.

Invariants checked (each is a row of the report):
  resume_counts_disk    a resumed run's env steps and episodes are the
                        steps and finished episodes stored on disk when it
                        started;
  resume_covers_ckpt    the steps on disk at a resume are at least the env
                        steps its checkpoint counted (the unfinished
                        episodes were written with the checkpoint);
  fallback_expected     a resume restores the newest checkpoint whose
                        files are intact;
  loss_within_interval  a kill loses at most run.checkpoint_seconds (plus
                        one update and one save) of training since the
                        restored checkpoint, when no damage intervened;
  final_counts_disk     the finished run's counters equal the data on disk;
  evaluations_unique    evaluations.csv has each env step once, in order;
  tensorboard_unique    TensorBoard shows each tag's steps once;
  files_load            every episode file loads; no temporary file is left;
  evaluate_export_ok    the evaluate and export commands succeed.

Writes JSON (rounds and invariants), CSV (rounds) and a PNG of the env and
train steps each round resumed from.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional

from absl import app, flags, logging

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DAMAGES = ('truncate', 'bitflip', 'state_file')

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command's flags (defined on run, not on import: tests import this
  module beside other benchmarks that define flags of the same names)."""
  flags.DEFINE_integer('rounds', 10, 'Kill rounds before the final run.')
  flags.DEFINE_list('damage', list(DAMAGES),
                    f'Damage applied after kills, in turn: {", ".join(DAMAGES)}.')
  flags.DEFINE_integer('damage_every', 2,
                       'Damage the newest checkpoint after every Nth kill.')
  flags.DEFINE_string('config', os.path.join(REPO_ROOT, 'configs',
                                             'cartpole.yaml'), 'Run config.')
  flags.DEFINE_multi_string(
      'set', ['run.total_env_steps=8000', 'run.checkpoint_seconds=4',
              'run.eval_every=1000', 'run.eval_episodes=3', 'run.log_every=100'],
      'Config overrides of the run (key.path=value).')
  flags.DEFINE_float('max_kill_seconds', 30.0,
                     'A training kill lands uniformly in [0, this] seconds '
                     'after the train step has compiled.')
  flags.DEFINE_float('startup_kills', 0.2,
                     'Share of kills that land while starting up instead.')
  flags.DEFINE_integer('seed', 0, 'Seed of the kill times.')
  flags.DEFINE_string('output', 'benchmarks/results/faults.json',
                      'Report path (.json; .csv and .png beside it).')
  flags.DEFINE_string('workdir', None,
                      'Where the run happens (default: a new temporary dir).')

RESUMED = re.compile(
    r'resumed from (\S+|no checkpoint \(a fresh agent\)): train step (\d+); '
    r'(\d+) env steps and (\d+) episodes stored')
STARTED = re.compile(r'training from env step (\d+) \(train step (\d+)\)')
COMPILED = 'train step compiled in'
# A kill may land after the last checkpoint by one interval plus one update,
# one save and one evaluation.
SLACK_SECONDS = 10.0


# ----------------------------------------------------------------------------
# Reading the run directory.
# ----------------------------------------------------------------------------


def stored_data(logdir: str) -> Dict[str, object]:
  """Steps, finished episodes and unreadable files of the episodes on disk."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  from wm_tf.runtime.replay import list_episode_files
  directory = os.path.join(logdir, 'episodes')
  out = {'steps': 0, 'episodes': 0, 'files': 0, 'unreadable': []}
  if not os.path.isdir(directory):
    return out
  for _, _, length, path in list_episode_files(directory):
    try:
      with np.load(path) as data:
        last = bool(data['is_last'][-1])
        if len(data['is_last']) != length:
          raise ValueError('length differs from the name')
    except Exception:  # pylint: disable=broad-except
      out['unreadable'].append(os.path.basename(path))
      continue
    out['files'] += 1
    out['steps'] += length
    out['episodes'] += int(last)
  return out


def checkpoint_value(prefix: str, name: str) -> Optional[int]:
  """An int value saved in checkpoint `prefix` (None if unreadable)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  try:
    reader = tf.train.load_checkpoint(prefix)
    key, = [k for k in reader.get_variable_to_shape_map()
            if k.startswith(f'values/{name}/')]
    return int(reader.get_tensor(key))
  except Exception:  # pylint: disable=broad-except
    return None


def intact_checkpoints(directory: str) -> List[str]:
  """Checkpoint prefixes whose files read, newest first."""
  from wm_tf.runtime import checkpoints  # pylint: disable=import-outside-toplevel
  return [p for p in checkpoints.list_checkpoints(directory)
          if checkpoints.damage_in(p) is None]


def damage(directory: str, kind: str, rng: random.Random) -> Optional[str]:
  """Damages the newest checkpoint (or deletes the state file); returns
  what, or None if nothing was damaged.

  A checkpoint is damaged only while an older intact one remains to fall
  back to: with none, resuming must stop with an error (tested apart, in
  tests/test_checkpoints.py), and the run could not go on.
  """
  found = intact_checkpoints(directory)
  if kind == 'state_file':
    path = os.path.join(directory, 'checkpoint')
    if os.path.exists(path):
      os.remove(path)
      return 'checkpoint (state file) deleted'
    return None
  if len(found) < 2:
    return None
  shards = glob.glob(glob.escape(found[0]) + '.data-*')
  if not shards:
    return None
  path = shards[0]
  size = os.path.getsize(path)
  if kind == 'truncate':
    with open(path, 'r+b') as f:
      f.truncate(size // 2)
  else:
    with open(path, 'r+b') as f:
      for _ in range(8):
        f.seek(rng.randrange(size))
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))
  return f'{os.path.basename(found[0])} {kind}'


def evaluation_steps(logdir: str) -> List[int]:
  from wm_tf.runtime.run_log import EvaluationLog  # pylint: disable=import-outside-toplevel
  return [row['env_steps'] for row in EvaluationLog(logdir).rows()]


def tensorboard_repeats(logdir: str) -> Dict[str, int]:
  """{tag: steps shown more than once} as TensorBoard reads the run."""
  from tensorboard.backend.event_processing import plugin_event_accumulator as pea  # pylint: disable=import-outside-toplevel
  acc = pea.EventAccumulator(logdir, size_guidance={pea.TENSORS: 0},
                             purge_orphaned_data=True)
  acc.Reload()
  repeats = {}
  for tag in acc.Tags()['tensors']:
    steps = [e.step for e in acc.Tensors(tag)]
    if len(steps) != len(set(steps)) or steps != sorted(steps):
      repeats[tag] = len(steps) - len(set(steps))
  return repeats


def leftovers(logdir: str) -> List[str]:
  """Temporary files of interrupted writes anywhere in the run directory."""
  out = []
  for root, dirs, files in os.walk(logdir):
    for name in files + dirs:
      if name.endswith('.tmp') or '_temp' in name:
        out.append(os.path.relpath(os.path.join(root, name), logdir))
  return out


# ----------------------------------------------------------------------------
# The rounds.
# ----------------------------------------------------------------------------


def _train_command(config: str, overrides: List[str]) -> List[str]:
  return [sys.executable, '-m', 'launch.train', f'--config={config}',
          '--noprogress', *[f'--set={o}' for o in overrides]]


def _environment() -> Dict[str, str]:
  env = dict(os.environ)
  env.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
  return env


def _kill_round(command, cwd, out_path, seconds, after_compile):
  """Starts the command and SIGKILLs it `seconds` after its start, or after
  its train step compiled (`after_compile`; the compile itself can take a
  minute on a loaded machine, and a kill during it tests nothing new).

  Returns:
    (kill time, time the first update had finished compiling or None).
  """
  with open(out_path, 'w') as out:
    process = subprocess.Popen(command, cwd=cwd, stdout=out,
                               stderr=subprocess.STDOUT, env=_environment())
  deadline = None if after_compile else time.time() + seconds
  compiled = None
  while (deadline is None or time.time() < deadline) and (
      process.poll() is None):
    time.sleep(0.05)
    if compiled is None and COMPILED in open(out_path).read():
      compiled = time.time()
      if after_compile:
        deadline = compiled + seconds
  killed_at = time.time()
  if process.poll() is None:
    process.send_signal(signal.SIGKILL)
  process.wait()
  return killed_at, compiled


def run_faults(rounds: int, damages: List[str], damage_every: int,
               config: str, overrides: List[str], max_kill_seconds: float,
               seed: int, workdir: str, startup_kills: float = 0.2
               ) -> Dict[str, object]:
  """Runs the rounds and the final run; returns the report."""
  from wm_tf.config import load_config  # pylint: disable=import-outside-toplevel
  resolved = load_config(config, overrides)
  interval = resolved.run.checkpoint_seconds
  cwd = os.path.join(workdir, 'elsewhere')
  os.makedirs(cwd, exist_ok=True)
  relative = os.path.join('logdir', f'{resolved.env.id}-seed{resolved.seed}')
  logdir = os.path.join(cwd, relative)
  ckpt_dir = os.path.join(logdir, 'checkpoints')
  command = _train_command(os.path.abspath(config), overrides)
  rng = random.Random(seed)
  report_rounds = []
  damage_index = 0
  expected_restore = None  # (prefix or None) at the next start
  previous_kill = None  # (kill time, damaged since)
  for number in range(rounds + 1):
    final = number == rounds
    before = stored_data(logdir)
    intact = intact_checkpoints(ckpt_dir)
    expected_restore = intact[0] if intact else None
    # Read now: the round's own saves may delete this checkpoint.
    saved_env = (checkpoint_value(expected_restore, 'env_steps')
                 if expected_restore else None)
    saved_mtime = (os.path.getmtime(expected_restore + '.index')
                   if expected_restore else None)
    out_path = os.path.join(workdir, f'round{number}.out')
    started = time.time()
    if final:
      with open(out_path, 'w') as out:
        result = subprocess.run(command, cwd=cwd, stdout=out,
                                stderr=subprocess.STDOUT, env=_environment(),
                                timeout=3600)
      killed_at, compiled, returncode = None, None, result.returncode
    else:
      at_startup = rng.random() < startup_kills
      seconds = rng.uniform(0.0, max_kill_seconds)
      killed_at, compiled = _kill_round(command, cwd, out_path, seconds,
                                        after_compile=not at_startup)
      returncode = None
    text = open(out_path).read()
    row = {'round': number, 'final': final,
           'seconds_alive': round((killed_at or time.time()) - started, 2),
           'stored_before': before['steps'],
           'episodes_before': before['episodes'],
           'expected_restore': os.path.basename(expected_restore or '') or None}
    resumed = RESUMED.search(text)
    start = STARTED.search(text)
    row['started'] = bool(start)
    row['resumed_from'] = None
    if resumed:
      source = resumed.group(1)
      row['resumed_from'] = (os.path.basename(source) if os.path.isabs(source)
                             else None)
      row['resumed_train_step'] = int(resumed.group(2))
      row['resumed_env_steps'] = int(resumed.group(3))
      row['resumed_episodes'] = int(resumed.group(4))
      row['counts_disk'] = (row['resumed_env_steps'] == before['steps'] and
                            row['resumed_episodes'] == before['episodes'])
      row['fallback_expected'] = row['resumed_from'] == row[
          'expected_restore']
      if expected_restore:
        row['checkpoint_env_steps'] = saved_env
        row['covers_checkpoint'] = (saved_env is not None and
                                    before['steps'] >= saved_env)
        if previous_kill is not None and not previous_kill[1]:
          # Training time of the killed process after the checkpoint.
          killed, trained_from = previous_kill[0], previous_kill[2]
          if trained_from is not None:
            lost = killed - max(trained_from, saved_mtime)
            row['seconds_lost'] = round(max(lost, 0.0), 2)
    elif start and before['steps']:
      row['counts_disk'] = False  # data on disk, yet not resumed
    if final:
      row['returncode'] = returncode
      done = re.search(r'done: (\d+) env steps.*last eval return (\S+);',
                       text)
      row['done_env_steps'] = int(done.group(1)) if done else None
      row['done_eval_return'] = done.group(2) if done else None
    row['killed_after'] = (None if final else
                           ('training' if compiled else 'startup'))
    damaged = None
    if not final and (number + 1) % damage_every == 0 and damages:
      damaged = damage(ckpt_dir, damages[damage_index % len(damages)], rng)
      damage_index += damaged is not None
    row['damage'] = damaged
    previous_kill = (killed_at, damaged, compiled) if not final else None
    report_rounds.append(row)
    print(json.dumps(row), flush=True)

  after = stored_data(logdir)
  final_row = report_rounds[-1]
  newest = intact_checkpoints(ckpt_dir)
  counted_env = checkpoint_value(newest[0], 'env_steps') if newest else None
  counted_episodes = checkpoint_value(newest[0], 'episodes') if newest else None
  evals = evaluation_steps(logdir)
  tools = {}
  for name, args in (
      ('evaluate', ['-m', 'launch.evaluate', f'--logdir={relative}',
                    '--episodes=2']),
      ('export', ['-m', 'launch.export', f'--logdir={relative}',
                  '--output=models/run'])):
    result = subprocess.run([sys.executable, *args], cwd=cwd,
                            capture_output=True, text=True,
                            env=_environment(), timeout=600)
    tools[name] = {'returncode': result.returncode,
                   'last_line': (result.stdout.strip().splitlines() or
                                 result.stderr.strip().splitlines() or [''])[-1]}
  resumes = [r for r in report_rounds if r.get('resumed_from') is not None
             or 'resumed_env_steps' in r]
  lost = [r['seconds_lost'] for r in report_rounds if 'seconds_lost' in r]
  invariants = {
      'resume_counts_disk': all(r.get('counts_disk', True)
                                for r in report_rounds),
      'resume_covers_ckpt': all(r.get('covers_checkpoint', True)
                                for r in report_rounds),
      'fallback_expected': all(r.get('fallback_expected', True)
                               for r in resumes),
      'loss_within_interval': all(s <= interval + SLACK_SECONDS
                                  for s in lost),
      'final_counts_disk': (final_row.get('returncode') == 0 and
                            counted_env == after['steps'] ==
                            resolved.run.total_env_steps and
                            counted_episodes == after['episodes']),
      'evaluations_unique': evals == sorted(set(evals)) and bool(evals),
      'tensorboard_unique': not tensorboard_repeats(logdir),
      'files_load': not after['unreadable'] and not leftovers(logdir),
      'evaluate_export_ok': all(t['returncode'] == 0 for t in tools.values()),
  }
  return {
      'command': ' '.join(['python', '-m', 'launch.train',
                           f'--config={os.path.relpath(config, REPO_ROOT)}',
                           '--noprogress'] +
                          [f'--set={o}' for o in overrides]),
      'checkpoint_seconds': interval,
      'rounds': report_rounds,
      'kills': rounds,
      'kills_while_training': sum(r['killed_after'] == 'training'
                                  for r in report_rounds),
      'damages': [r['damage'] for r in report_rounds if r['damage']],
      'seconds_lost': lost,
      'final': {'env_steps_counted': counted_env,
                'episodes_counted': counted_episodes,
                'steps_on_disk': after['steps'],
                'episodes_on_disk': after['episodes'],
                'episode_files': after['files'],
                'evaluation_steps': evals,
                'tensorboard_repeats': tensorboard_repeats(logdir),
                'leftovers': leftovers(logdir),
                'tools': tools},
      'invariants': invariants,
      'all_held': all(invariants.values()),
  }


def write_outputs(report: Dict[str, object], output: str) -> None:
  """The JSON report, a CSV of the rounds and a PNG of the resumes."""
  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  with open(output, 'w') as f:
    json.dump(report, f, indent=2)
  base = os.path.splitext(output)[0]
  rows = report['rounds']
  keys = sorted({k for row in rows for k in row})
  with open(base + '.csv', 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
  resumed = [r for r in rows if 'resumed_env_steps' in r]
  top.plot([r['round'] for r in resumed],
           [r['resumed_env_steps'] for r in resumed], 'o-',
           label='env steps at resume (= steps on disk)')
  top.plot([r['round'] for r in resumed],
           [r.get('checkpoint_env_steps') or 0 for r in resumed], 'x--',
           label="restored checkpoint's env steps")
  top.set_ylabel('env steps')
  top.legend(fontsize=8)
  bottom.plot([r['round'] for r in resumed],
              [r['resumed_train_step'] for r in resumed], 'o-')
  for r in rows:
    if r['damage']:
      bottom.axvline(r['round'] + 0.5, color='red', alpha=0.3)
  bottom.set_ylabel('train step at resume')
  bottom.set_xlabel('round (red: checkpoint damaged after it)')
  fig.tight_layout()
  fig.savefig(base + '.png', dpi=100)
  plt.close(fig)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)  # TensorBoard's reader is chatty
  unknown = [d for d in FLAGS.damage if d not in DAMAGES]
  if unknown:
    print(f'error: --damage={",".join(unknown)} unknown; allowed: '
          f'{", ".join(DAMAGES)}', file=sys.stderr)
    sys.exit(2)
  workdir = FLAGS.workdir or tempfile.mkdtemp(prefix='wm_tf_faults_')
  try:
    report = run_faults(FLAGS.rounds, FLAGS.damage, FLAGS.damage_every,
                        FLAGS.config, FLAGS.set, FLAGS.max_kill_seconds,
                        FLAGS.seed, workdir, FLAGS.startup_kills)
  finally:
    if FLAGS.workdir is None:
      shutil.rmtree(workdir, ignore_errors=True)
  write_outputs(report, FLAGS.output)
  print(json.dumps(report['invariants'], indent=2))
  print(f'all invariants held: {report["all_held"]}; report {FLAGS.output}')
  sys.exit(0 if report['all_held'] else 1)


if __name__ == '__main__':
  define_flags()
  app.run(main)
