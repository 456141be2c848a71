"""Tests for wm_tf/runtime/collector.py on real gymnasium CartPole.

References are CartPole's own physics (termination bounds, reset range,
reward 1 per step) and single environments stepped by hand.
"""

import gymnasium as gym
import numpy as np
import pytest

from wm_tf.runtime import collector as collector_lib
from wm_tf.runtime.environments import inspect_env, make_vector_env

NUM_ENVS = 3
STEPS = 400
MAX_STEPS = 25  # short limit: episodes end by truncation as well
# CartPole-v1 terminates when |x| > 2.4 or |theta| > 12 degrees.
X_LIMIT = 2.4
THETA_LIMIT = 12 * 2 * np.pi / 360


def _collect(num_envs=NUM_ENVS, steps=STEPS, seed=0):
  spec = inspect_env('CartPole-v1', MAX_STEPS)
  envs = make_vector_env('CartPole-v1', num_envs, 'sync', MAX_STEPS)
  rng = np.random.default_rng(seed)
  try:
    collector = collector_lib.Collector(envs, spec, seed=seed)
    records, finished = [], []
    for _ in range(steps):
      records.append(collector.step(
          lambda obs: collector_lib.random_actions(rng, spec, num_envs)))
      finished.extend(collector.pop_finished())
  finally:
    envs.close()
  stacked = {k: np.stack([r[k] for r in records]) for k in records[0]}
  return stacked, finished, collector


@pytest.fixture(scope='module')
def collected():
  return _collect()


def test_record_shapes_and_dtypes(collected):
  records, _, _ = collected
  assert records['observation'].shape == (STEPS, NUM_ENVS, 4)
  assert records['observation'].dtype == np.float32
  assert records['action'].shape == (STEPS, NUM_ENVS, 2)
  assert records['action'].dtype == np.float32
  for key in ('reward',):
    assert records[key].shape == (STEPS, NUM_ENVS)
    assert records[key].dtype == np.float32
  for key in ('is_first', 'is_terminal', 'is_last'):
    assert records[key].shape == (STEPS, NUM_ENVS)
    assert records[key].dtype == bool


def test_is_first_exactly_after_episode_ends(collected):
  records, _, _ = collected
  is_first, is_last = records['is_first'], records['is_last']
  expected = np.concatenate([np.ones((1, NUM_ENVS), bool), is_last[:-1]])
  np.testing.assert_array_equal(is_first, expected)
  assert not np.any(is_first & is_last)
  # Many episodes, in every stream.
  assert np.all(is_first.sum(0) >= 5)


def test_first_steps_have_zero_reward_others_cartpole_reward(collected):
  records, _, _ = collected
  reward, is_first = records['reward'], records['is_first']
  np.testing.assert_array_equal(reward[is_first], 0.0)
  np.testing.assert_array_equal(reward[~is_first], 1.0)


def test_first_observations_are_reset_states(collected):
  """A first step shows the reset state, not the last state of the episode."""
  records, _, _ = collected
  obs = records['observation']
  first = obs[records['is_first']]
  assert np.all(np.abs(first) <= 0.05)  # CartPole's reset range
  ended = obs[records['is_last']]
  assert np.any(np.abs(ended) > 0.05)


def test_terminal_flags_match_cartpole_physics(collected):
  records, _, _ = collected
  obs = records['observation']
  out_of_bounds = (np.abs(obs[..., 0]) > X_LIMIT) | (
      np.abs(obs[..., 2]) > THETA_LIMIT)
  np.testing.assert_array_equal(records['is_terminal'], out_of_bounds)
  assert not np.any(records['is_terminal'] & ~records['is_last'])
  truncated = records['is_last'] & ~records['is_terminal']
  assert records['is_terminal'].any() and truncated.any()


def test_no_transition_crosses_an_episode(collected):
  records, _, _ = collected
  is_first, is_last = records['is_first'], records['is_last']
  for i in range(NUM_ENVS):
    for t in np.flatnonzero(is_last[:-1, i]):
      assert is_first[t + 1, i]
  # Last steps carry no action (there is no next step in the episode).
  np.testing.assert_array_equal(records['action'][is_last], 0.0)
  # Every other step's action is one-hot.
  actions = records['action'][~is_last]
  np.testing.assert_array_equal(actions.sum(-1), 1.0)
  assert set(np.unique(actions)) == {0.0, 1.0}


def test_episode_lengths_respect_limit(collected):
  records, _, _ = collected
  for i in range(NUM_ENVS):
    firsts = np.flatnonzero(records['is_first'][:, i])
    lasts = np.flatnonzero(records['is_last'][:, i])
    for start, end in zip(firsts, lasts):
      steps = end - start  # env steps taken in the episode
      assert 1 <= steps <= MAX_STEPS
      if steps == MAX_STEPS:
        assert records['is_last'][end, i]
      if not records['is_terminal'][end, i]:
        assert steps == MAX_STEPS  # truncated only at the limit


def _episodes_from_records(records):
  """(return, length) of episodes complete in the records, in the order
  the collector finishes them: by time, then by environment index."""
  is_first, is_last, reward = (records['is_first'], records['is_last'],
                               records['reward'])
  start = np.zeros(NUM_ENVS, int)
  episodes = []
  for t in range(len(reward)):
    start = np.where(is_first[t], t, start)
    for i in np.flatnonzero(is_last[t]):
      episodes.append((float(reward[start[i]:t + 1, i].sum()),
                       int(t - start[i])))
  return episodes


def test_finished_episodes_match_records(collected):
  records, finished, collector = collected
  expected = _episodes_from_records(records)
  assert len(expected) >= 15
  got = [(e['return'], e['length']) for e in finished]
  # The collector reports an episode on the step that ends it, one call
  # before that step is returned as a record.
  pending = int(collector.is_last.sum())
  assert len(got) == len(expected) + pending
  assert got[:len(expected)] == expected
  # CartPole pays 1 per step: return = length.
  assert all(r == l for r, l in got)
  assert collector.pop_finished() == []


def test_random_actions_cover_choices():
  spec = inspect_env('CartPole-v1')
  actions = collector_lib.random_actions(np.random.default_rng(0), spec, 500)
  assert actions.shape == (500, 2)
  np.testing.assert_array_equal(actions.sum(-1), 1.0)
  assert 200 < actions[:, 0].sum() < 300
  pendulum = inspect_env('Pendulum-v1')
  actions = collector_lib.random_actions(np.random.default_rng(0), pendulum,
                                         500)
  assert actions.shape == (500, 1)
  assert actions.min() >= -2.0 and actions.max() <= 2.0
  assert actions.min() < -1.5 and actions.max() > 1.5


# ---------------------------------------------------------------------------
# evaluate_policy.
# ---------------------------------------------------------------------------


def _lean_policy(obs):
  """Push toward the side the pole leans to: fails after a varying while."""
  return (obs[..., 2] > 0).astype(np.int64)


def _reference_returns(num_envs, seed, max_steps):
  """Each environment alone, seeded as the vector env seeds copy i."""
  out = []
  for i in range(num_envs):
    env = gym.make('CartPole-v1', max_episode_steps=max_steps)
    obs, _ = env.reset(seed=seed + i)
    total, done = 0.0, False
    while not done:
      obs, reward, terminated, truncated, _ = env.step(
          int(_lean_policy(obs)))
      total += reward
      done = terminated or truncated
    env.close()
    out.append(total)
  return np.array(out)


@pytest.mark.parametrize('max_steps', [None, 45])
def test_evaluate_policy_one_return_per_env(max_steps):
  num_envs, seed = 4, 123
  spec = inspect_env('CartPole-v1')
  envs = make_vector_env('CartPole-v1', num_envs, 'sync', max_steps)
  firsts = []

  def act(obs, is_first):
    firsts.append(np.array(is_first))
    return np.eye(2)[_lean_policy(obs['observation'])]

  try:
    returns = collector_lib.evaluate_policy(envs, spec, act, seed=seed)
  finally:
    envs.close()
  # Each episode starts at the first step only: a stateful policy resets
  # there and carries its state after.
  np.testing.assert_array_equal(firsts[0], np.ones(num_envs, bool))
  assert len(firsts) > 1 and not np.any(firsts[1:])
  assert returns.shape == (num_envs,)
  expected = _reference_returns(num_envs, seed, max_steps)
  np.testing.assert_array_equal(returns, expected)
  if max_steps is None:
    assert len(set(expected.tolist())) > 1  # environments end at different
  else:                                     # times; the mask must hold
    assert np.all(expected <= max_steps)
