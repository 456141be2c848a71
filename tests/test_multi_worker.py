"""Two `launch.train --strategy=multi_worker` processes on 127.0.0.1.

The TF_CONFIG example of docs/scaling.md, as a test: two workers, each with
its own --logdir, train a few synchronised updates. Their checkpoints must
hold the same weights and optimizer state (the updates are all-reduced),
and their episodes must differ (`distribution.worker_seed`).
"""

import glob
import json
import os
import socket
import subprocess
import sys

import numpy as np
import tensorflow as tf

from conftest import REPO_ROOT, SMALL_OVERRIDES

OVERRIDES = list(SMALL_OVERRIDES) + [
    'env.id=CartPole-v1', 'env.num_envs=1', 'run.total_env_steps=60',
    'run.prefill_steps=40', 'warmup.steps=50', 'run.train_ratio=0.25',
    'run.eval_every=0', 'run.checkpoint_every=0', 'run.log_every=20']
UPDATES = 5  # (60 - 40) * 0.25
TIMEOUT = 400  # seconds for both workers, on a loaded two-core machine


def _free_ports(count):
  sockets = [socket.socket() for _ in range(count)]
  for s in sockets:
    s.bind(('127.0.0.1', 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def _tf_config(ports, index):
  return json.dumps({
      'cluster': {'worker': [f'127.0.0.1:{p}' for p in ports]},
      'task': {'type': 'worker', 'index': index}})


def _train_two_workers(root):
  """Runs both workers to the end; returns their logdirs."""
  ports = _free_ports(2)
  logdirs = [str(root / f'worker{i}') for i in range(2)]
  procs = []
  try:
    for i, logdir in enumerate(logdirs):
      env = dict(os.environ, TF_CONFIG=_tf_config(ports, i))
      procs.append(subprocess.Popen(
          [sys.executable, '-m', 'launch.train', '--strategy=multi_worker',
           f'--logdir={logdir}', '--noprogress',
           *[a for o in OVERRIDES for a in ('--set', o)]],
          cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
          stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=TIMEOUT)[0] for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  for p, out in zip(procs, outputs):
    assert p.returncode == 0, out[-3000:]
  return logdirs


def _checkpoint(logdir):
  return tf.train.load_checkpoint(tf.train.latest_checkpoint(
      os.path.join(logdir, 'checkpoints')))


def _episodes(logdir):
  paths = sorted(glob.glob(os.path.join(logdir, 'episodes', '*.npz')))
  assert paths, logdir
  episodes = []
  for path in paths:
    with np.load(path) as data:
      episodes.append({k: data[k] for k in data.files})
  return episodes


def test_two_workers_share_weights_and_collect_different_episodes(tmp_path):
  logdirs = _train_two_workers(tmp_path)
  first, second = (_checkpoint(d) for d in logdirs)
  assert int(first.get_tensor(
      'learner/train_steps/.ATTRIBUTES/VARIABLE_VALUE')) == UPDATES
  keys = sorted(first.get_variable_to_shape_map())
  assert keys == sorted(second.get_variable_to_shape_map())
  # Everything but the run state each worker keeps for itself.
  shared = [k for k in keys if not k.startswith('values/')]
  weights = [k for k in shared if k.startswith('model_variables/')]
  # Every network's weights: at least a kernel and a bias for each of the
  # encoder, the representation, the dynamics, the three heads, the actor
  # and the two critics.
  assert len(weights) >= 2 * 9, weights
  for key in shared:
    np.testing.assert_array_equal(first.get_tensor(key),
                                  second.get_tensor(key), err_msg=key)
  # The updates moved the weights: the optimizers' moments are not zero.
  moments = [k for k in shared if '_optimizer/_variables/' in k and
             first.get_tensor(k).size > 1]
  assert moments and all(np.any(first.get_tensor(k)) for k in moments)

  ours, theirs = (_episodes(d) for d in logdirs)
  observations = [np.concatenate([e['observation'] for e in run])
                  for run in (ours, theirs)]
  size = min(len(o) for o in observations)
  assert size >= 40
  assert not np.allclose(observations[0][:size], observations[1][:size])
