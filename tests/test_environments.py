"""Tests for wm_tf/runtime/environments.py: which spaces are accepted."""

import importlib.util

import gymnasium as gym
import numpy as np
import pytest

from wm_tf.runtime.environments import (EnvSpec, UnsupportedEnvironment,
                                        inspect_env, make_vector_env,
                                        spec_from_spaces, to_env_actions)

VECTOR = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)


def test_cartpole_and_pendulum_specs():
  assert inspect_env('CartPole-v1') == EnvSpec('CartPole-v1', 4, 2, True)
  assert inspect_env('Pendulum-v1') == EnvSpec('Pendulum-v1', 3, 1, False,
                                               (-2.0,), (2.0,))


@pytest.mark.parametrize('observation_space, action_space, needles', [
    (gym.spaces.MultiBinary(16), gym.spaces.Discrete(4), ['MultiBinary(16)']),
    (gym.spaces.Dict({'a': gym.spaces.Tuple((VECTOR,))}),
     gym.spaces.Discrete(2), ["key 'a'", 'Tuple']),
    (gym.spaces.Box(0, 255, (64, 64), np.uint8), gym.spaces.Discrete(2),
     ['64, 64']),
    (gym.spaces.Box(-1.0, 1.0, (8, 8), np.float32), gym.spaces.Discrete(2),
     ['rank 1']),
    (VECTOR, gym.spaces.MultiDiscrete([3, 2]), ['MultiDiscrete']),
    (VECTOR, gym.spaces.MultiBinary(3), ['MultiBinary']),
    (VECTOR, gym.spaces.Discrete(3, start=1), ['start']),
    (VECTOR, gym.spaces.Box(-np.inf, np.inf, (2,), np.float32),
     ['infinite']),
    (VECTOR, gym.spaces.Box(-1.0, 1.0, (2, 2), np.float32), ['rank 1']),
])
def test_unsupported_spaces_are_refused_with_the_space_named(
    observation_space, action_space, needles):
  with pytest.raises(UnsupportedEnvironment) as info:
    spec_from_spaces('Some-v0', observation_space, action_space)
  message = str(info.value)
  assert "'Some-v0'" in message
  for needle in needles:
    assert needle in message


def test_unknown_id_suggests_close_match():
  with pytest.raises(UnsupportedEnvironment) as info:
    inspect_env('Pendulm-v1')
  message = str(info.value)
  assert "'Pendulm-v1'" in message and "'Pendulum-v1'" in message
  assert 'env.id' in message


def test_id_with_missing_module_is_unsupported_environment():
  with pytest.raises(UnsupportedEnvironment, match='no_such_module'):
    inspect_env('no_such_module:Thing-v0')


@pytest.mark.skipif(importlib.util.find_spec('Box2D') is not None,
                    reason='Box2D is installed here')
def test_missing_dependency_is_not_called_unknown_id():
  with pytest.raises(UnsupportedEnvironment) as info:
    inspect_env('LunarLander-v3')
  message = str(info.value)
  assert 'Box2D' in message
  assert 'Unknown environment id' not in message


def test_to_env_actions():
  discrete = EnvSpec('x', 4, 3, True)
  one_hot = np.eye(3, dtype=np.float32)[[2, 0, 1]]
  out = to_env_actions(one_hot, discrete)
  np.testing.assert_array_equal(out, [2, 0, 1])
  assert out.dtype == np.int64
  box = EnvSpec('y', 3, 2, False, (-2.0, 0.0), (2.0, 1.0))
  out = to_env_actions(np.array([[3.0, -1.0], [0.5, 0.5]]), box)
  np.testing.assert_array_equal(out, [[2.0, 0.0], [0.5, 0.5]])
  assert out.dtype == np.float32


def test_vector_env_applies_episode_limit():
  envs = make_vector_env('CartPole-v1', 2, 'sync', max_episode_steps=3)
  try:
    envs.reset(seed=0)
    for step in range(3):
      _, _, terminated, truncated, _ = envs.step(np.array([0, 1]))
    assert np.all(truncated | terminated)
  finally:
    envs.close()
