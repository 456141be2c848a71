"""Observation spaces: which gymnasium spaces wm_tf takes, and converting
what environments return into observation dicts.

Allowed leaf spaces (a Dict space's values, or the space itself, which then
gets the key 'observation'):

  Box of floats, rank 1 (or a scalar, taken as [1])  -> float32 [size]
  Box of uint8, rank 3 (H, W, C)                     -> uint8 [H, W, C]
  Discrete(n)                                        -> one-hot float32 [n]

Anything else is refused with one line naming the key, its space and what
is allowed, before TensorFlow starts.
"""

from __future__ import annotations

from typing import Dict, Mapping

import gymnasium as gym
import numpy as np

from wm_tf.specs import (OBSERVATION, STEP_KEYS, Observations,
                         ObservationSpec)

ALLOWED = ('a float Box of rank 1 (or a scalar), a uint8 Box image of '
           'shape (H, W, C), Discrete, or a Dict of those')


class UnsupportedObservation(ValueError):
  """An observation space wm_tf cannot train on."""


def _leaf_spec(env_id: str, key: str, space) -> ObservationSpec:
  refuse = lambda why: UnsupportedObservation(
      f'Environment {env_id!r}: observation key {key!r} has space {space}'
      f'{why}; allowed: {ALLOWED}.')
  if isinstance(space, gym.spaces.Discrete):
    return ObservationSpec(key, (int(space.n),))
  if not isinstance(space, gym.spaces.Box):
    raise refuse('')
  if np.issubdtype(space.dtype, np.floating):
    if len(space.shape) > 1:
      raise refuse(' (a float Box of rank > 1: images must be uint8)')
    return ObservationSpec(key, space.shape or (1,))
  if space.dtype == np.uint8 and len(space.shape) == 3:
    return ObservationSpec(key, space.shape, 'uint8')
  raise refuse('')


def observation_specs(env_id: str, space) -> Observations:
  """The `ObservationSpec` of every key of `space`, or raises
  UnsupportedObservation naming the first key it cannot take."""
  if not isinstance(space, gym.spaces.Dict):
    return (_leaf_spec(env_id, OBSERVATION, space),)
  specs = []
  for key, leaf in space.spaces.items():
    if key in STEP_KEYS:
      raise UnsupportedObservation(
          f'Environment {env_id!r}: observation key {key!r} is the name of '
          f'a step record field; allowed: any key but {STEP_KEYS}.')
    specs.append(_leaf_spec(env_id, str(key), leaf))
  if not specs:
    raise UnsupportedObservation(
        f'Environment {env_id!r} has an empty Dict observation space; '
        f'allowed: {ALLOWED}.')
  return tuple(specs)


def _leaf_value(value, spec: ObservationSpec, discrete, leading: tuple
                ) -> np.ndarray:
  if discrete is not None:
    n, start = discrete
    indices = np.asarray(value, np.int64).reshape(leading) - start
    return np.eye(n, dtype=np.float32)[indices]
  return np.asarray(value, spec.dtype).reshape(leading + spec.shape)


class ObservationConverter:
  """Environment observations -> observation dicts {key: array}.

  Discrete values become one-hot vectors, scalars [1], floats float32, and
  images stay uint8. `leading` is the batch shape of what the environment
  returns: (N,) for a vector env of N copies, () for one env.

  Example:
    convert = ObservationConverter(env.observation_space)
    obs = convert(vector_env.reset()[0], leading=(8,))  # {key: [8, ...]}
  """

  def __init__(self, space, env_id: str = 'environment'):
    self.specs = observation_specs(env_id, space)
    leaves = (space.spaces if isinstance(space, gym.spaces.Dict)
              else {OBSERVATION: space})
    # key -> (n, start) of a Discrete space, else None.
    self._discrete = {
        key: ((int(leaf.n), int(leaf.start))
              if isinstance(leaf, gym.spaces.Discrete) else None)
        for key, leaf in leaves.items()}
    self._dict = isinstance(space, gym.spaces.Dict)

  def __call__(self, observation, leading: tuple = ()
               ) -> Dict[str, np.ndarray]:
    values = observation if self._dict else {OBSERVATION: observation}
    return {spec.key: _leaf_value(values[spec.key], spec,
                                  self._discrete[spec.key], tuple(leading))
            for spec in self.specs}


def check_observation(observation: Mapping[str, np.ndarray],
                      specs: Observations, leading: tuple) -> None:
  """Raises ValueError naming the key whose shape or dtype differs from
  `specs` (with the batch shape `leading` in front), or a missing key."""
  for spec in specs:
    if spec.key not in observation:
      raise ValueError(f'observation key {spec.key!r} is missing; expected '
                       f'keys {[s.key for s in specs]}.')
    value = np.asarray(observation[spec.key])
    if (value.shape != tuple(leading) + spec.shape
        or value.dtype != np.dtype(spec.dtype)):
      raise ValueError(
          f'observation key {spec.key!r}: got {value.dtype} '
          f'{list(value.shape)}, expected {spec.dtype} '
          f'{list(tuple(leading) + spec.shape)}.')
