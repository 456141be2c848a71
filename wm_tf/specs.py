"""Environment specs: what the agent needs to know of an environment.

Plain data, below the agent: the builder sizes the components from an
`EnvSpec`, and the runtime (`wm_tf.runtime.environments`) makes one from a
gymnasium environment's spaces.
"""

from __future__ import annotations

import dataclasses
from typing import Optional


@dataclasses.dataclass(frozen=True)
class EnvSpec:
  """What the agent needs to know of an environment.

  Observations are vectors [observation_dim]; actions are one-hot vectors
  [action_dim] (discrete) or bounded vectors [action_dim] in [low, high].
  """
  id: str
  observation_dim: int
  action_dim: int  # number of choices (discrete) or vector size (continuous)
  discrete: bool
  low: Optional[tuple] = None  # continuous action bounds, [action_dim]
  high: Optional[tuple] = None
