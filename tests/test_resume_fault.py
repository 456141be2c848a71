"""Fault test: a training run killed with SIGKILL at random moments and
restarted with the same command each time.

At the end: the run finishes; every episode file loads and has the length
its name says; no episode is stored twice; the env-step and train-step
counters a restart resumes from never go backwards; and each kill loses at
most one checkpoint interval of training (`run.checkpoint_every` train
steps) against the progress logged before it.

The progress reached before a kill is read from the killed process's own
TensorBoard event file (log_every=1 writes and flushes every env step).
"""

import glob
import os
import random
import re
import signal
import subprocess
import sys
import time

import numpy as np
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator

from conftest import REPO_ROOT, SMALL_OVERRIDES
from wm_tf.runtime.replay import list_episode_files

TOTAL = 300
CHECKPOINT_EVERY = 5
RUN = list(SMALL_OVERRIDES) + [
    f'run.total_env_steps={TOTAL}', 'run.prefill_steps=50',
    # World model only (warmup past the end): one function to trace on
    # each restart keeps the test fast.
    'run.train_ratio=0.5', 'warmup.steps=1000', 'run.log_every=1',
    'run.eval_every=0', 'run.histogram_every=0', 'run.image_every=0',
    f'run.checkpoint_every={CHECKPOINT_EVERY}', 'run.checkpoints_to_keep=2',
]
# Each round is killed either while starting up (restoring, reloading,
# building) or after a random number of further train steps.
KILLS = ['training', 'training', 'startup', 'training', 'training']
STARTED = re.compile(r'training from env step (\d+) \(train step (\d+)\)')


def _command(logdir):
  return [sys.executable, '-m', 'launch.train', f'--logdir={logdir}',
          '--noprogress', *[f'--set={o}' for o in RUN]]


def _wait_for_start(path, process, timeout=180):
  """(env step, train step) the process starts from, or None if it ended."""
  deadline = time.time() + timeout
  while time.time() < deadline:
    with open(path) as f:
      match = STARTED.search(f.read())
    if match:
      return int(match.group(1)), int(match.group(2))
    if process.poll() is not None:
      return None
    time.sleep(0.05)
  raise AssertionError(f'no start line in {timeout} s: {open(path).read()}')


def _progress(logdir, pid):
  """Largest (env step, train step) the process `pid` logged."""
  paths = glob.glob(os.path.join(logdir, f'events.out.tfevents.*.{pid}.*'))
  best = (0, 0)
  for path in paths:
    acc = event_accumulator.EventAccumulator(
        path, size_guidance={event_accumulator.TENSORS: 0})
    acc.Reload()  # tolerates a record cut off by the kill
    if 'perf/train_steps' in acc.Tags()['tensors']:
      for event in acc.Tensors('perf/train_steps'):
        best = max(best, (event.step,
                          int(tf.make_ndarray(event.tensor_proto))))
  return best


def test_killed_and_restarted_run_loses_nothing_stored(tmp_path):
  logdir = str(tmp_path / 'run')
  rng = random.Random(0)
  starts, reached = [], []
  for round_, when in enumerate(KILLS):
    out = str(tmp_path / f'round{round_}.out')
    with open(out, 'w') as stdout:
      process = subprocess.Popen(_command(logdir), cwd=REPO_ROOT,
                                 stdout=stdout, stderr=subprocess.STDOUT)
    try:
      if when == 'startup':
        time.sleep(rng.uniform(0.0, 4.0))
      else:
        start = _wait_for_start(out, process)
        target = start[1] + rng.randint(2, 20) if start else 0
        while process.poll() is None and _progress(
            logdir, process.pid)[1] < target:
          time.sleep(0.1)
        time.sleep(rng.uniform(0.0, 0.5))
      process.send_signal(signal.SIGKILL)
    finally:
      process.kill()
      process.wait()
    with open(out) as f:
      match = STARTED.search(f.read())
    if match is None:
      continue  # killed while starting up: nothing to compare
    start = (int(match.group(1)), int(match.group(2)))
    starts.append(start)
    reached.append(max(_progress(logdir, process.pid), start))

  # The same command, left alone, finishes the run.
  result = subprocess.run(_command(logdir), cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
  assert f'done: {TOTAL} env steps' in result.stdout
  starts.append(tuple(int(x) for x in STARTED.search(result.stdout).groups()))
  # Enough kills landed while training to mean something.
  killed_while_training = [
      (s, r) for s, r in zip(starts, reached) if r[1] > s[1]]
  assert len(killed_while_training) >= 2, (starts, reached)

  # Counters never go backwards from one restart to the next ...
  for earlier, later in zip(starts, starts[1:]):
    assert later[0] >= earlier[0] and later[1] >= earlier[1], starts
  # ... and each kill loses at most one checkpoint interval of training.
  for (env_reached, train_reached), restart in zip(reached, starts[1:]):
    del env_reached
    assert train_reached - restart[1] <= CHECKPOINT_EVERY, (reached, starts)

  # Every episode file loads and is as long as its name says; none repeats.
  directory = os.path.join(logdir, 'episodes')
  files = list_episode_files(directory)
  assert len(files) >= 8
  digests = set()
  for _, _, length, path in files:
    with np.load(path) as data:
      assert sorted(data.files) == sorted(
          ['observation', 'action', 'reward', 'is_first', 'is_terminal',
           'is_last'])
      arrays = {k: data[k] for k in data.files}
    assert all(len(a) == length for a in arrays.values()), path
    assert arrays['is_first'][0] and arrays['is_last'][-1], path
    assert not arrays['is_last'][:-1].any(), path
    digest = b''.join(arrays[k].tobytes() for k in sorted(arrays))
    assert digest not in digests, f'{path} repeats an earlier episode'
    digests.add(digest)
  indices = [index for index, _, _, _ in files]
  assert len(set(indices)) == len(indices)
  # Anything else there is an interrupted write's hidden temporary file.
  names = {os.path.basename(path) for _, _, _, path in files}
  others = [n for n in os.listdir(directory) if n not in names]
  assert all(n.startswith('.') and n.endswith('.tmp') for n in others), others

  # The newest checkpoint is the finished run's.
  newest = tf.train.latest_checkpoint(os.path.join(logdir, 'checkpoints'))
  final_train_steps = int(re.search(r'ckpt-(\d+)$', newest).group(1))
  assert final_train_steps >= starts[-1][1]
