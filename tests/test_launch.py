"""End-to-end tests of `python -m launch.train` in a subprocess.

One short training run (300 CartPole steps, small models, no XLA) is shared
by the tests of its outputs: TensorBoard events, checkpoint, config.yaml.
Bad inputs must end with exit status 2 and one `error:` line, no traceback.
"""

import csv
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator

from conftest import REPO_ROOT, SMALL_OVERRIDES
from wm_tf.agent.builder import build_agent
from wm_tf.config import load_config
from wm_tf.runtime.environments import inspect_env

RUN_OVERRIDES = list(SMALL_OVERRIDES) + [
    'run.total_env_steps=300',
    'run.prefill_steps=100',
    'warmup.steps=150',
    'run.eval_every=300',
    'run.eval_episodes=2',
    'run.log_every=100',
    # Pinned, whatever the repository's config says:
    'env.id=CartPole-v1',
    'env.num_envs=1',
    'run.train_ratio=0.5',
    'run.checkpoint_every=0',
]
CONFIG = os.path.join('configs', 'cartpole.yaml')


def _launch(*args, timeout=300):
  """Runs the launcher from the repository root; returns CompletedProcess."""
  env = dict(os.environ)
  # Test what a user sees by default, not our quieted test environment.
  env.pop('TF_CPP_MIN_LOG_LEVEL', None)
  return subprocess.run(
      [sys.executable, '-m', 'launch.train', *args], cwd=REPO_ROOT, env=env,
      capture_output=True, text=True, timeout=timeout)


def _set_flags(overrides):
  return [arg for o in overrides for arg in ('--set', o)]


# ---------------------------------------------------------------------------
# One training run.
# ---------------------------------------------------------------------------


@pytest.fixture(scope='module')
def run(tmp_path_factory):
  """(logdir, CompletedProcess, config file) of one short training run.

  The repository's config is copied first: others may edit it meanwhile.
  """
  root = tmp_path_factory.mktemp('launch')
  config = root / 'cartpole.yaml'
  shutil.copyfile(os.path.join(REPO_ROOT, CONFIG), config)
  logdir = str(root / 'run')
  result = _launch(f'--config={config}', f'--logdir={logdir}',
                   '--noprogress', *_set_flags(RUN_OVERRIDES))
  return logdir, result, str(config)


def _scalars(logdir):
  acc = event_accumulator.EventAccumulator(
      logdir, size_guidance={event_accumulator.TENSORS: 0})
  acc.Reload()
  # tf.summary.scalar in TF2 writes tensor events.
  return {tag: [(e.step, float(tf.make_ndarray(e.tensor_proto)))
                for e in acc.Tensors(tag)]
          for tag in acc.Tags()['tensors']}


def test_run_finishes(run):
  _, result, _ = run
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'Traceback' not in result.stderr
  assert 'done: 300 env steps' in result.stdout


def test_run_writes_tensorboard_scalars(run):
  logdir, result, _ = run
  assert result.returncode == 0, result.stderr[-3000:]
  scalars = _scalars(logdir)
  for tag in ('world_model/loss', 'world_model/grad_norm',
              'world_model/dynamics_nll', 'actor/loss', 'actor/grad_norm',
              'critic/loss', 'eval/return', 'eval/return_std',
              'train/episode_return', 'perf/fps', 'perf/train_steps'):
    assert tag in scalars, tag
    assert all(np.isfinite(v) for _, v in scalars[tag]), tag
  # Logged every 100 env steps; updates start after 100 prefill steps.
  assert [s for s, _ in scalars['perf/train_steps']] == [100, 200, 300]
  assert [s for s, _ in scalars['world_model/loss']] == [200, 300]
  # The actor trains only after the 150 warmup steps.
  assert [s for s, _ in scalars['actor/loss']] == [200, 300]
  # train_ratio 0.5 over the 200 steps after prefill: 100 updates.
  assert abs(dict(scalars['perf/train_steps'])[300] - 100) <= 1
  # One evaluation at the end; CartPole returns lie in [1, 500].
  (step, value), = scalars['eval/return']
  assert step == 300
  assert 1.0 <= value <= 500.0
  # evaluations.csv has the same evaluation, and the median update time.
  with open(os.path.join(logdir, 'evaluations.csv')) as f:
    (row,) = list(csv.DictReader(f))
  assert int(row['env_steps']) == 300
  assert float(row['eval/return']) == pytest.approx(value, rel=1e-5)
  assert 0.0 < float(row['update_ms']) < float(row['wall_seconds']) * 1e3
  # CartPole pays 1 per step: episode return = episode length.
  for (s1, ret), (s2, length) in zip(scalars['train/episode_return'],
                                     scalars['train/episode_length']):
    assert s1 == s2 and ret == pytest.approx(length)


def test_run_saves_config(run):
  logdir, result, config = run
  assert result.returncode == 0, result.stderr[-3000:]
  saved = load_config(os.path.join(logdir, 'config.yaml'))
  assert saved == load_config(config, RUN_OVERRIDES)
  assert saved.run.total_env_steps == 300 and saved.run.jit is False


def _restored_agent(logdir, seed, objects):
  """A fresh agent, initialised from `seed`, with `objects` restored."""
  config = load_config(os.path.join(logdir, 'config.yaml'))
  keras.utils.set_random_seed(seed)
  agent = build_agent(config, inspect_env(config.env.id))
  everything = dict(world_model=agent.world_model, actor=agent.actor,
                    critic=agent.critic, slow_critic=agent.slow_critic,
                    learner=agent.learner)
  path = tf.train.latest_checkpoint(os.path.join(logdir, 'checkpoints'))
  if objects:
    assert path is not None
    tf.train.Checkpoint(**{k: everything[k] for k in objects}).restore(
        path).expect_partial()
  return agent, path


@pytest.fixture(scope='module')
def restored(run):
  """Agents restored from the run's checkpoint, from two initialisations.

  'full': restored as the Trainer saved it (models and learner);
  'world_model': the world model alone, as export code would;
  'fresh': seed 1, not restored.
  """
  logdir, result, _ = run
  assert result.returncode == 0, result.stderr[-3000:]
  everything = ['world_model', 'actor', 'critic', 'slow_critic', 'learner']
  return {
      'full': [_restored_agent(logdir, seed, everything) for seed in (1, 2)],
      'world_model': [_restored_agent(logdir, seed, ['world_model'])[0]
                      for seed in (1, 2)],
      'fresh': _restored_agent(logdir, 1, [])[0],
  }


def _differing(vars_a, vars_b):
  return [a.path for a, b in zip(vars_a, vars_b)
          if not np.array_equal(a.numpy(), b.numpy())]


def test_run_saves_checkpoint_that_restores_trained_weights(restored):
  (a, path), (b, _) = restored['full']
  train_steps = int(a.learner.train_steps.numpy())
  assert os.path.basename(path) == f'ckpt-{train_steps}'
  assert abs(train_steps - 100) <= 1
  # Two differently initialised agents hold the same weights once restored.
  for name in ('world_model', 'actor', 'critic'):
    vars_a = getattr(a, name).trainable_variables
    vars_b = getattr(b, name).trainable_variables
    assert not _differing(vars_a, vars_b), name
  # And those are trained weights, not the initial ones.
  fresh = restored['fresh'].world_model.trainable_variables
  assert len(_differing(fresh, a.world_model.trainable_variables)) == len(
      fresh)


def test_checkpoint_restores_slow_critic(restored):
  """The slow critic is in no optimizer: only its own names can save it."""
  (a, _), (b, _) = restored['full']
  assert not _differing(a.slow_critic.variables, b.slow_critic.variables)


def test_checkpoint_restores_world_model_alone(restored):
  """Export or evaluation code restores the world model without a learner,
  so every weight must be saved under the model's own names (not only via
  the optimizer's variable list)."""
  a, b = restored['world_model']
  assert not _differing(a.world_model.variables, b.world_model.variables)


# ---------------------------------------------------------------------------
# Bad inputs.
# ---------------------------------------------------------------------------

_RESULTS = {}


def _bad_run(args, tmp_path_factory):
  """Memoised: each bad input is launched once for the tests below."""
  if args not in _RESULTS:
    logdir = str(tmp_path_factory.mktemp('bad') / 'run')
    _RESULTS[args] = (_launch('--noprogress', f'--logdir={logdir}', *args,
                              timeout=120), logdir)
  return _RESULTS[args]


CONFIG_ERRORS = [
    (('--set', 'actor.entropi=0.1'), ['actor.entropi', "'entropy'"]),
    (('--set', 'encoder.units=wide'),
     ['encoder.units', "'wide'", 'an integer']),
    (('--set', 'env.vectorization=threads'),
     ['env.vectorization', "'sync'", "'async'"]),
    (('--set', 'returns.lambda=1.5'), ['returns.lambda', '1.5', '[0, 1]']),
    (('--set', 'run.jit'), ["'run.jit'", 'key.path=value']),
    (('--config', '/nonexistent/wm_tf/config.yaml'),
     ['/nonexistent/wm_tf/config.yaml', 'does not exist']),
]
ENV_ERRORS = [
    (('--set', 'env.id=CartPol-v1'), ["'CartPol-v1'", "'CartPole-v1'"]),
    (('--set', 'env.id=Blackjack-v1'), ["'Blackjack-v1'", 'Tuple', 'Box']),
    (('--set', 'encoder.mlp_keys=obs', '--set', 'encoder.cnn_keys=obs'),
     ['select no observation key', 'observation (vector [4])']),
]

# Refused after TensorFlow is imported (its import may log first).
LAUNCH_ERRORS = [
    (('--threads=-1',), ['--threads=-1', 'positive']),
]


def _ids(cases):
  return [' '.join(args) for args, _ in cases]


def _error_lines(stderr):
  return [line for line in stderr.splitlines() if line.startswith('error:')]


@pytest.mark.parametrize('args, needles',
                         CONFIG_ERRORS + ENV_ERRORS + LAUNCH_ERRORS,
                         ids=_ids(CONFIG_ERRORS + ENV_ERRORS + LAUNCH_ERRORS))
def test_bad_input_exits_2_with_one_error_line(args, needles,
                                               tmp_path_factory):
  result, logdir = _bad_run(args, tmp_path_factory)
  assert result.returncode == 2, (result.stdout, result.stderr[-3000:])
  assert 'Traceback' not in result.stderr
  errors = _error_lines(result.stderr)
  assert len(errors) == 1, result.stderr
  for needle in needles:
    assert needle in errors[0], (needle, errors[0])
  # The error is the last thing said, and nothing was written.
  assert result.stderr.strip().splitlines()[-1] == errors[0]
  assert result.stdout == ''
  assert not os.path.exists(logdir)


@pytest.mark.parametrize('args, needles', CONFIG_ERRORS,
                         ids=_ids(CONFIG_ERRORS))
def test_config_error_stderr_is_exactly_one_line(args, needles,
                                                 tmp_path_factory):
  del needles
  result, _ = _bad_run(args, tmp_path_factory)
  assert result.stderr.strip().splitlines() == _error_lines(result.stderr)


@pytest.mark.parametrize('args, needles', ENV_ERRORS, ids=_ids(ENV_ERRORS))
def test_env_error_stderr_is_exactly_one_line(args, needles,
                                              tmp_path_factory):
  del needles
  result, _ = _bad_run(args, tmp_path_factory)
  assert result.stderr.strip().splitlines() == _error_lines(result.stderr)

