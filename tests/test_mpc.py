"""Tests for wm_tf/agent/mpc.py: planners on toy world models.

The toy models are plain functions of known behaviour returning TFP
distributions, so the best plan is known by enumeration (NumPy) or in
closed form.
"""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from conftest import SMALL_OVERRIDES
from wm_tf.agent.builder import build_agent
from wm_tf.agent.mpc import PLANNERS, CrossEntropyMethod, RandomShooting
from wm_tf.config import ConfigError, load_config
from wm_tf.runtime.environments import EnvSpec

tfd = tfp.distributions

A = 3  # discrete actions
H = 2  # planning horizon
GAMMA = 0.9
CONTINUE = 0.8


class PairRewardModel:
  """State = (last action, action before) one-hots, [N, 2A].

  dynamics(s, a) = (a, s[:A]) exactly; reward(s') = a' M a + b . a' for
  s' = (a', a): it pays for pairs of consecutive actions, so the best first
  action depends on the action before it (in the start state) and on what
  follows. continue = CONTINUE everywhere; value(s) = v . a.
  """

  def __init__(self, seed=0):
    rng = np.random.default_rng(seed)
    self.m = rng.normal(size=(A, A)).astype(np.float32)
    self.b = rng.normal(size=A).astype(np.float32)
    self.v = rng.normal(size=A).astype(np.float32)

  def dynamics(self, state, action):
    return tfd.Independent(tfd.Normal(
        tf.concat([action, state[:, :A]], -1), 1.0), 1)

  def reward(self, state):
    last, before = state[:, :A], state[:, A:]
    r = tf.reduce_sum(last * tf.linalg.matvec(self.m, before), -1)
    return tfd.Normal(r + tf.linalg.matvec(last, self.b), 1.0)

  def continue_probability(self, state):
    return tf.fill(tf.shape(state)[:1], CONTINUE)

  def value(self, state):
    return tfd.Normal(tf.linalg.matvec(state[:, :A], self.v), 1.0)

  def numpy_return(self, before, actions, with_value):
    """Discounted return of an action index sequence from `before`."""
    total, discount, prev = 0.0, 1.0, before
    for a in actions:
      total += discount * (self.m[a, prev] + self.b[a])
      discount *= GAMMA * CONTINUE
      prev = a
    if with_value:
      total += discount * self.v[prev]
    return total


def _starts(befores):
  one_hot = np.eye(A, dtype=np.float32)
  return tf.constant(np.concatenate(
      [one_hot[befores], np.zeros((len(befores), A), np.float32)], -1))


def _planner(cls, model, with_value=True, samples=256, **kwargs):
  return cls(model, model.value if with_value else None, A, True,
             horizon=H, samples=samples, gamma=GAMMA, **kwargs)


@pytest.mark.parametrize('with_value', [False, True])
def test_score_matches_numpy_returns_of_every_sequence(with_value):
  model = PairRewardModel(1)
  planner = _planner(RandomShooting, model, with_value)
  sequences = list(itertools.product(range(A), repeat=H))
  befores = [0, 1, 2]
  actions = np.eye(A, dtype=np.float32)[np.array(sequences)]  # [S, H, A]
  actions = np.broadcast_to(actions, (len(befores),) + actions.shape)
  scores = planner.score(_starts(befores), tf.constant(actions)).numpy()
  want = [[model.numpy_return(b, s, with_value) for s in sequences]
          for b in befores]
  np.testing.assert_allclose(scores, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_random_shooting_picks_first_action_of_best_enumerated_sequence(seed):
  model = PairRewardModel(seed)
  # 256 uniform samples of 9 sequences miss one with probability 1e-13.
  planner = _planner(RandomShooting, model)
  befores = [0, 1, 2, 0]
  # Acting compiles the planner with XLA; once is enough to check that.
  plan = tf.function(planner.plan, jit_compile=True) if seed == 0 else (
      planner.plan)
  action = plan(_starts(befores), tf.constant([seed, 7])).numpy()
  sequences = list(itertools.product(range(A), repeat=H))
  for n, before in enumerate(befores):
    returns = [model.numpy_return(before, s, True) for s in sequences]
    best = sequences[int(np.argmax(returns))]
    np.testing.assert_array_equal(action[n], np.eye(A)[best[0]])


def test_discrete_cem_finds_best_first_action():
  model = PairRewardModel(3)
  planner = _planner(CrossEntropyMethod, model, samples=32, iterations=3,
                     elites=4)
  befores = [0, 1, 2]
  action = planner.plan(_starts(befores), tf.constant([1, 2])).numpy()
  sequences = list(itertools.product(range(A), repeat=H))
  for n, before in enumerate(befores):
    returns = [model.numpy_return(before, s, True) for s in sequences]
    np.testing.assert_array_equal(
        action[n], np.eye(A)[sequences[int(np.argmax(returns))][0]])


class QuadraticModel:
  """The state is the last action; reward(s) = -|s - goal|^2."""

  def __init__(self, goal):
    self.goal = tf.constant(goal, tf.float32)

  def dynamics(self, state, action):
    del state
    return tfd.Independent(tfd.Normal(action, 1.0), 1)

  def reward(self, state):
    return tfd.Normal(-tf.reduce_sum(tf.square(state - self.goal), -1), 1.0)

  def continue_probability(self, state):
    return tf.ones(tf.shape(state)[:1])


def test_cem_beats_random_shooting_on_quadratic_reward():
  goal = [0.3, -0.6, 0.8]
  model = QuadraticModel(goal)
  common = dict(world_model=model, value=None, action_dim=3, discrete=False,
                low=[-1.0] * 3, high=[1.0] * 3, horizon=3, samples=64,
                gamma=1.0)
  shooting = RandomShooting(**common)
  cem = CrossEntropyMethod(iterations=5, elites=8, **common)
  start = tf.zeros([32, 3])
  seed = tf.constant([4, 2])
  rs_error = np.linalg.norm(shooting.plan(start, seed).numpy() - goal, axis=-1)
  cem_action = tf.function(cem.plan, jit_compile=True)(start, seed).numpy()
  cem_error = np.linalg.norm(cem_action - goal, axis=-1)
  assert np.all(np.abs(cem_action) <= 1.0)
  assert cem_error.mean() < 0.5 * rs_error.mean(), (cem_error.mean(),
                                                    rs_error.mean())
  assert cem_error.max() < 0.25


def test_planners_registry():
  assert PLANNERS.names() == ('cem', 'random_shooting')


# ---------------------------------------------------------------------------
# The planner in the agent.
# ---------------------------------------------------------------------------

MPC_SMALL = ['imagination.mode=mpc', 'mpc.samples=8', 'mpc.horizon=2',
             'mpc.iterations=2', 'mpc.elites=2']


@pytest.mark.parametrize('overrides', [
    MPC_SMALL,
    ['acting.uncertainty=true', 'acting.fallback=mpc'],
], ids=['mode', 'fallback'])
def test_unbounded_continuous_actions_refused_with_config_error(overrides):
  spec = EnvSpec('Unbounded-v0', observations=3, action_dim=2,
                 discrete=False, low=(-np.inf, -1.0), high=(np.inf, 1.0))
  config = load_config(None, list(SMALL_OVERRIDES) + overrides)
  with pytest.raises(ConfigError, match='unbounded') as error:
    build_agent(config, spec)
  assert 'mpc' in str(error.value) and 'Unbounded-v0' in str(error.value)


def test_mpc_mode_acts_with_planner_inside_bounds():
  spec = EnvSpec('Pendulum-v1', observations=3, action_dim=1,
                 discrete=False, low=(-2.0,), high=(2.0,))
  keras.utils.set_random_seed(0)
  agent = build_agent(load_config(
      None, list(SMALL_OVERRIDES) + MPC_SMALL + ['mpc.method=cem']),
      spec)
  assert agent.policy.planner is not None
  obs = tf.constant(np.random.default_rng(0).normal(size=(5, 3)), tf.float32)
  action, state, _ = agent.policy.act({'observation': obs},
      tf.ones([5], tf.bool),
                                      agent.policy.initial_state(5),
                                      tf.constant([1, 2]))
  action = action.numpy()
  np.testing.assert_array_equal(state['action'], action)
  assert action.shape == (5, 1)
  assert np.all(np.abs(action) <= 2.0)
  # Same seed, same plan; the planner, not the actor, chose it.
  latent = agent.world_model.encode({'observation': obs})
  np.testing.assert_allclose(
      agent.policy.planner.plan(latent, tf.constant([1, 2])).numpy(), action,
      rtol=1e-5, atol=1e-6)
