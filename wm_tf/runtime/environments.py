"""Gymnasium environments: checking what we can handle, and vectorising.

We handle the observation spaces of `wm_tf.runtime.observation_spaces`
(float vectors, uint8 images, Discrete, and Dicts of them), and Discrete or
bounded 1-D Box actions. Anything else is refused before training starts
with a message naming the space and what is allowed.
"""

from __future__ import annotations

from typing import Optional

import gymnasium as gym
import numpy as np

from wm_tf.config.schema import EnvConfig
from wm_tf.runtime.env_errors import UnsupportedEnvironment  # noqa: F401
from wm_tf.runtime.env_families import make_family_env
from wm_tf.runtime.observation_spaces import (UnsupportedObservation,
                                              observation_specs)
from wm_tf.specs import EnvSpec  # noqa: F401  (re-exported)


def make_env(env_id: str, max_episode_steps: Optional[int] = None,
             render_mode: Optional[str] = None,
             options: Optional[EnvConfig] = None) -> gym.Env:
  """One environment of any family (wm_tf.runtime.env_families), with the
  settings of `options` (the config's env section; None: its defaults)."""
  return make_family_env(env_id, options, max_episode_steps, render_mode)


def spec_from_spaces(env_id: str, observation_space, action_space) -> EnvSpec:
  """Checks the spaces and describes them, or raises UnsupportedEnvironment."""
  try:
    obs = observation_specs(env_id, observation_space)
  except UnsupportedObservation as e:
    raise UnsupportedEnvironment(str(e)) from None
  act = action_space
  if isinstance(act, gym.spaces.Discrete):
    if act.start != 0:
      raise UnsupportedEnvironment(
          f'Environment {env_id!r} has action space {act} starting at '
          f'{act.start}; Discrete action spaces must start at 0.')
    return EnvSpec(env_id, obs, int(act.n), True)
  if isinstance(act, gym.spaces.Box):
    if len(act.shape) != 1:
      raise UnsupportedEnvironment(
          f'Environment {env_id!r} has action space {act}; Box actions must '
          'be vectors (rank 1).')
    if not (np.all(np.isfinite(act.low)) and np.all(np.isfinite(act.high))):
      raise UnsupportedEnvironment(
          f'Environment {env_id!r} has action space {act} with infinite '
          'bounds; the tanh-squashed actor needs finite low and high.')
    return EnvSpec(env_id, obs, int(act.shape[0]), False,
                   tuple(float(x) for x in act.low),
                   tuple(float(x) for x in act.high))
  raise UnsupportedEnvironment(
      f'Environment {env_id!r} has action space {act}; allowed: Discrete or '
      'a bounded 1-D Box (MultiDiscrete, MultiBinary, Dict and Tuple are not '
      'supported).')


def inspect_env(env_id: str, max_episode_steps: Optional[int] = None,
                options: Optional[EnvConfig] = None) -> EnvSpec:
  """Opens the environment once to check its id and spaces."""
  env = make_env(env_id, max_episode_steps, options=options)
  try:
    return spec_from_spaces(env_id, env.observation_space, env.action_space)
  finally:
    env.close()


def make_vector_env(env_id: str, num_envs: int, vectorization: str = 'sync',
                    max_episode_steps: Optional[int] = None,
                    render_mode: Optional[str] = None,
                    options: Optional[EnvConfig] = None
                    ) -> gym.vector.VectorEnv:
  """`num_envs` copies of an environment, autoreset on the next step.

  With gymnasium's NEXT_STEP autoreset, the step after an episode ends
  ignores the action and returns the reset observation: the collector
  records that step as is_first (see `wm_tf.runtime.collector`).
  """
  inspect_env(env_id, max_episode_steps, options)  # errors before forking
  fns = [lambda: make_env(env_id, max_episode_steps, render_mode, options)
         for _ in range(num_envs)]
  if vectorization == 'async':
    return gym.vector.AsyncVectorEnv(
        fns, autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)
  if vectorization == 'sync':
    return gym.vector.SyncVectorEnv(
        fns, autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)
  raise ValueError(f"vectorization must be 'sync' or 'async', "
                   f'got {vectorization!r}.')


def to_env_actions(actions: np.ndarray, spec: EnvSpec) -> np.ndarray:
  """Agent actions [N, A] (one-hot or bounded) -> what env.step takes."""
  if spec.discrete:
    return np.argmax(actions, axis=-1).astype(np.int64)
  return np.clip(actions, spec.low, spec.high).astype(np.float32)
