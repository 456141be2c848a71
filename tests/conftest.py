"""Shared fixtures: a small, fast configuration and batches in replay format."""

import os

# Quiet TensorFlow's C++ start-up chatter in test output; must precede import.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

# Two logical CPU devices, so MirroredStrategy has two replicas
# (tests/test_distribution.py); TF must not have initialised devices yet.
# Ops without a device scope still run on the first one.
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices('CPU')[0],
    [tf.config.LogicalDeviceConfiguration()] * 2)
# Grappler's graph rewrites (constant folding, op fusion, layout) take
# seconds on each train step's first call and change no result a test
# checks beyond float rounding, which the tests' tolerances allow; the
# launchers the tests start as subprocesses keep them on.
tf.config.optimizer.set_experimental_options({'disable_meta_optimizer': True})
# Under pytest-xdist (`-n 2`) each worker keeps to one core's worth of
# kernel threads: most of a test's time is single-threaded Python (tracing,
# eager dispatch), and two workers with a pool each as wide as the machine
# would contend for both cores.
if os.environ.get('PYTEST_XDIST_WORKER'):
  tf.config.threading.set_intra_op_parallelism_threads(1)

from wm_tf.config import load_config  # noqa: E402
from wm_tf.runtime.collector import random_actions  # noqa: E402
from wm_tf.runtime.environments import EnvSpec  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Small models: every hidden width 32, latent 8, batches of 4 x 8, horizon 5;
# the design's defaults (the preset `design`), which the unit tests were
# written against: each test that needs another algorithm sets its keys.
# The recipe itself (the schema defaults) is trained by tests/test_launch.py
# and tests/test_presets.py checks that every shipped config resolves to it.
# With the schema's two hidden layers per network (as the golden numbers of
# tests/test_learner_golden.py were recorded):
SMALL_TWO_LAYERS = (
    'presets=[design]',
    'encoder.units=32',
    'representation_learner.units=32',
    'representation_learner.latent_dim=8',
    'dynamics.units=32',
    'heads.reward.units=32',
    'heads.continue.units=32',
    'heads.decoder.units=32',
    'actor.units=32',
    'critic.units=32',
    'imagination.horizon=5',
    'replay.batch_size=4',
    'replay.sequence_length=8',
    'run.jit=false',
)
# The small models the tests build: one hidden layer per network, which
# makes the traced train step about half as large and every test that
# traces one faster.
SMALL_OVERRIDES = SMALL_TWO_LAYERS + tuple(
    f'{key}.layers=1' for key in ('encoder', 'dynamics', 'heads.reward',
                                  'heads.continue', 'heads.decoder', 'actor',
                                  'critic'))


@pytest.fixture
def small_overrides():
  """The overrides of `small_config`, as `key.path=value` strings."""
  return list(SMALL_OVERRIDES)


@pytest.fixture
def small_config():
  """The design's defaults with small models, XLA off; callers may mutate
  their copy."""
  return load_config(None, SMALL_OVERRIDES)


@pytest.fixture
def cartpole_spec():
  """CartPole-v1 as the agent sees it (without opening the environment)."""
  return EnvSpec('CartPole-v1', observations=4, action_dim=2,
                 discrete=True)


def make_batch(spec: EnvSpec, rng: np.random.Generator, batch_size: int = 4,
               length: int = 8, first_prob: float = 0.1,
               terminal_prob: float = 0.1) -> dict:
  """A random batch [B, T, ...] in the replay's step format, as tensors.

  Step 0 of every sequence is is_first; other steps are is_first with
  probability `first_prob`. Actions are one-hot for discrete specs.
  """
  shape = (batch_size, length)
  is_first = rng.random(shape) < first_prob
  is_first[:, 0] = True
  is_terminal = (rng.random(shape) < terminal_prob) & ~is_first
  action = random_actions(rng, spec, batch_size * length).reshape(
      shape + (spec.action_dim,))
  reward = np.where(is_first, 0.0, rng.normal(size=shape)).astype(np.float32)
  return {
      'observation': tf.constant(
          rng.normal(size=shape + (spec.observation_dim,)), tf.float32),
      'action': tf.constant(action),
      'reward': tf.constant(reward),
      'is_first': tf.constant(is_first),
      'is_terminal': tf.constant(is_terminal),
      'is_last': tf.constant(is_terminal),
  }


@pytest.fixture
def batch_factory(cartpole_spec):
  """make_batch bound to CartPole's spec: factory(seed, **kwargs)."""
  def factory(seed, spec=cartpole_spec, **kwargs):
    return make_batch(spec, np.random.default_rng(seed), **kwargs)
  return factory
