"""The lab environments: gymnasium's checker, their laws, and the trainer's ids."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import wm_tf.lab
from wm_tf.lab import bounce, corridor, dice, grid_world, ood_probe
from wm_tf.runtime.environments import inspect_env, make_env

IDS = sorted(wm_tf.lab.LAB_ENVS)


@pytest.mark.parametrize('env_id', IDS)
def test_passes_the_gymnasium_checker(env_id):
  check_env(gym.make(env_id).unwrapped, skip_render_check=True)


@pytest.mark.parametrize('env_id', IDS)
def test_the_trainer_resolves_the_id_and_accepts_the_spaces(env_id):
  env = make_env(env_id)
  assert env.spec.id == env_id
  spec = inspect_env(env_id)
  assert spec.discrete == isinstance(env.action_space, gym.spaces.Discrete)


@pytest.mark.parametrize('env_id', IDS)
def test_laws_are_distributions_inside_the_observation_space(env_id):
  env = gym.make(env_id).unwrapped
  rng = np.random.default_rng(0)
  for state in env.probe_states(8, rng):
    for _ in range(3):
      action = env.action_space.sample()
      law = env.true_next_distribution(state, action)
      assert law.probabilities.sum() == pytest.approx(1.0)
      assert np.all(law.probabilities > 0)
      for obs in law.observations:
        assert env.observation_space.contains(obs)


@pytest.mark.parametrize('env_id', IDS)
def test_step_frequencies_follow_the_law(env_id):
  """From a fixed state and action, the empirical frequency of each outcome
  is within 4 standard errors of its probability."""
  env = gym.make(env_id).unwrapped
  env.reset(seed=3)
  rng = np.random.default_rng(1)
  state = env.probe_states(1, rng)[0]
  action = env.action_space.sample()
  law = env.true_next_distribution(state, action)
  n = 3000
  counts = np.zeros(len(law.probabilities))
  for _ in range(n):
    env.set_state(state)
    obs, reward, terminated, _, _ = env.step(action)
    k = int(np.argmin(np.abs(law.observations - obs).sum(1)))
    assert reward == pytest.approx(law.rewards[k])
    assert terminated == law.terminated[k]
    counts[k] += 1
  se = np.sqrt(law.probabilities * (1 - law.probabilities) / n)
  assert np.all(np.abs(counts / n - law.probabilities) <= 4 * se + 1e-12)


def test_dice_law():
  env = dice.Dice()
  roll = env.true_next_distribution(dice.one_hot(4), dice.ROLL)
  np.testing.assert_allclose(roll.probabilities, np.full(6, 1 / 6))
  np.testing.assert_array_equal(roll.observations, np.eye(6))
  assert env.expected_reward(dice.one_hot(2), dice.ROLL) == pytest.approx(0.5)
  safe = env.true_next_distribution(dice.one_hot(6), dice.SAFE)
  np.testing.assert_array_equal(safe.observations, [dice.one_hot(3)])
  # The mean of the next state is no face at all.
  mean = roll.probabilities @ roll.observations
  assert not any(np.allclose(mean, face) for face in np.eye(6))


def test_bounce_is_bimodal_at_the_peg_and_deterministic_elsewhere():
  env = bounce.Bounce()
  law = env.true_next_distribution(np.array([0, 1, -1], np.float32), 1)
  np.testing.assert_allclose(sorted(law.observations[:, 0]), [-0.25, 0.25])
  np.testing.assert_allclose(law.probabilities, [0.5, 0.5])
  np.testing.assert_allclose(law.observations[:, 2], [1, 1])
  wall = env.true_next_distribution(np.array([1, 1, 1], np.float32), 1)
  np.testing.assert_allclose(wall.observations, [[0.75, -1, 1]])
  hit = env.true_next_distribution(np.array([0.75, 1, 1], np.float32), 1)
  assert hit.rewards.tolist() == [1.0]
  miss = env.true_next_distribution(np.array([-0.75, -1, 1], np.float32), 1)
  assert miss.rewards.tolist() == [-1.0]


def test_bounce_best_policy_earns_five_per_episode():
  env = gym.make('wm_tf/Bounce-v0')
  obs, _ = env.reset(seed=0)
  total, done = 0.0, False
  while not done:
    action = int(obs[1] > 0)  # paddle on the side the ball heads to
    obs, reward, terminated, truncated, _ = env.step(action)
    total, done = total + reward, terminated or truncated
  assert total == 5.0


def test_grid_world_walls_and_goal():
  env = grid_world.GridWorld()
  corner = grid_world.cell_observation(0, 0)
  law = env.true_next_distribution(corner, 0)  # up, into the wall
  np.testing.assert_array_equal(law.observations, [corner])
  last = env.true_next_distribution(grid_world.cell_observation(4, 3), 3)
  assert law.rewards.tolist() == [-0.05]
  assert last.terminated.tolist() == [True]
  assert last.rewards[0] == pytest.approx(1.05)
  away = env.true_next_distribution(grid_world.cell_observation(2, 2), 0)
  assert away.rewards[0] == pytest.approx(-0.15)


def test_grid_world_best_return():
  env = gym.make('wm_tf/GridWorld-v0')
  env.reset(seed=0)
  total = 0.0
  for action in (1, 1, 1, 1, 3, 3, 3, 3):  # down x4, right x4
    _, reward, terminated, _, _ = env.step(action)
    total += reward
  assert terminated and total == pytest.approx(1.4)


def test_ood_probe_episodes_stay_in_the_covered_half():
  env = gym.make('wm_tf/OODProbe-v0')
  reached = -1.0
  for seed in range(20):
    obs, _ = env.reset(seed=seed)
    done = False
    while not done:
      obs, _, terminated, truncated, _ = env.step(np.ones(2, np.float32))
      reached, done = max(reached, obs[0]), terminated or truncated
  held_out = env.unwrapped.held_out_states(100, np.random.default_rng(0))
  assert reached <= 0.5 < held_out[:, 0].min()


def test_corridor_slips_and_ends():
  env = corridor.Corridor(length=6)
  law = env.true_next_distribution(np.array([0.4], np.float32), 1)
  np.testing.assert_allclose(law.observations[:, 0], [0.6, 0.4])
  np.testing.assert_allclose(law.probabilities, [0.8, 0.2])
  np.testing.assert_allclose(law.rewards, [0.1, 0.0])
  end = env.true_next_distribution(np.array([0.8], np.float32), 1)
  assert end.terminated.tolist() == [True, False]
  assert end.rewards[0] == pytest.approx(1.1)
  wall = env.true_next_distribution(np.array([0.0], np.float32), 0)
  assert wall.probabilities.tolist() == [1.0]
  assert gym.make('wm_tf/Corridor-long-v0').unwrapped.length == 60
  assert gym.spec('wm_tf/Corridor-long-v0').max_episode_steps == 200
