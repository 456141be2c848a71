"""Environment specs: what the agent needs to know of an environment.

Plain data, below the agent: the builder sizes the components from an
`EnvSpec`, and the runtime (`wm_tf.runtime.observation_spaces`) makes one
from a gymnasium environment's spaces.

Observations are always a dict {key: array}: an environment whose space is
not a Dict has the single key 'observation'. Each key is a float32 vector
[size] or a uint8 image [H, W, C] (`ObservationSpec`). In a step record of
the replay the observation keys sit beside 'action', 'reward' and the flags
(`STEP_KEYS`), which no observation key may be called.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Tuple, Union

# The key of a non-Dict observation space.
OBSERVATION = 'observation'
# The keys of a step record besides the observation keys.
STEP_KEYS = ('action', 'reward', 'is_first', 'is_terminal', 'is_last')
OBSERVATION_DTYPES = ('float32', 'uint8')


@dataclasses.dataclass(frozen=True)
class ObservationSpec:
  """One observation key: a float32 vector [size] or a uint8 image [H, W, C].
  """
  key: str
  shape: Tuple[int, ...]
  dtype: str = 'float32'

  def __post_init__(self):
    object.__setattr__(self, 'shape', tuple(int(n) for n in self.shape))
    if self.dtype not in OBSERVATION_DTYPES:
      raise ValueError(f'observation {self.key!r}: dtype {self.dtype!r}; '
                       f'allowed: {OBSERVATION_DTYPES}.')
    if self.is_image != (len(self.shape) == 3) or not (
        self.is_image or len(self.shape) == 1):
      raise ValueError(
          f'observation {self.key!r}: shape {self.shape} dtype {self.dtype}; '
          'allowed: a float32 vector [size] or a uint8 image [H, W, C].')

  @property
  def is_image(self) -> bool:
    return self.dtype == 'uint8'

  @property
  def nbytes(self) -> int:
    """Bytes of one step of this key."""
    size = 1
    for n in self.shape:
      size *= n
    return size * (1 if self.is_image else 4)


Observations = Tuple[ObservationSpec, ...]


def vector_observation(size: int, key: str = OBSERVATION) -> Observations:
  """The observations of an environment with one vector [size]."""
  return (ObservationSpec(key, (int(size),)),)


@dataclasses.dataclass(frozen=True)
class EnvSpec:
  """What the agent needs to know of an environment.

  Observations are dicts described by `observations`, one `ObservationSpec`
  per key (an int n stands for one vector [n] under 'observation'); actions
  are one-hot vectors [action_dim] (discrete) or bounded vectors
  [action_dim] in [low, high].
  """
  id: str
  observations: Union[Observations, int]
  action_dim: int  # number of choices (discrete) or vector size (continuous)
  discrete: bool
  low: Optional[tuple] = None  # continuous action bounds, [action_dim]
  high: Optional[tuple] = None

  def __post_init__(self):
    observations = self.observations
    if isinstance(observations, int):
      observations = vector_observation(observations)
    observations = tuple(observations)
    keys = [o.key for o in observations]
    if not keys or len(set(keys)) != len(keys):
      raise ValueError(f'observation keys must be distinct and at least one, '
                       f'got {keys}.')
    clash = [k for k in keys if k in STEP_KEYS]
    if clash:
      raise ValueError(f'observation keys {clash} are step record keys; '
                       f'allowed: any name but {STEP_KEYS}.')
    object.__setattr__(self, 'observations', observations)

  @property
  def observation_keys(self) -> Tuple[str, ...]:
    return tuple(o.key for o in self.observations)

  @property
  def observation_dim(self) -> int:
    """The size of the observation of an environment with one vector key
    (vector benchmarks); ValueError for any other."""
    if len(self.observations) != 1 or self.observations[0].is_image:
      raise ValueError(f'{self.id}: observation_dim needs one vector key; '
                       f'the keys are {self.observation_keys}.')
    return self.observations[0].shape[0]

  def observation(self, key: str) -> ObservationSpec:
    for o in self.observations:
      if o.key == key:
        return o
    raise KeyError(f'no observation key {key!r}; keys: '
                   f'{self.observation_keys}.')
