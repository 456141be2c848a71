"""A point that must reach a target on the plane: a Dict-observation env.

  python -m launch.train --set env.id=examples.point_reach:PointReach
  python -m launch.train --set env.id=examples.point_reach:make_point_reach \
      --set "env.kwargs={speed: 0.05}"

The observation holds two float vectors, {'position': [2], 'target': [2]};
the action is a velocity in [-1, 1]^2, times `speed`. The reward is minus
the distance to the target; the episode terminates when the point is
within `radius` of it, and is truncated after `max_steps` steps.
render_mode='rgb_array' draws the point and the target, so env.pixels
works too.
"""

from __future__ import annotations

from typing import Optional

import gymnasium as gym
import numpy as np


class PointReach(gym.Env):
  """Move a point to a target, both uniform in [-1, 1]^2 at reset."""

  metadata = {'render_modes': ['rgb_array']}

  def __init__(self, speed: float = 0.1, radius: float = 0.1,
               max_steps: int = 100, render_mode: Optional[str] = None):
    self.speed, self.radius, self.max_steps = speed, radius, max_steps
    self.render_mode = render_mode
    plane = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    self.observation_space = gym.spaces.Dict(
        {'position': plane, 'target': plane})
    self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    self._position = np.zeros(2, np.float32)
    self._target = np.zeros(2, np.float32)
    self._steps = 0

  def _observation(self):
    return {'position': self._position.copy(), 'target': self._target.copy()}

  def reset(self, *, seed: Optional[int] = None, options=None):
    super().reset(seed=seed)
    self._position = self.np_random.uniform(-1, 1, 2).astype(np.float32)
    self._target = self.np_random.uniform(-1, 1, 2).astype(np.float32)
    self._steps = 0
    return self._observation(), {}

  def step(self, action):
    move = np.clip(np.asarray(action, np.float32), -1, 1) * self.speed
    self._position = np.clip(self._position + move, -1, 1).astype(np.float32)
    self._steps += 1
    distance = float(np.linalg.norm(self._position - self._target))
    terminated = distance < self.radius
    truncated = not terminated and self._steps >= self.max_steps
    return self._observation(), -distance, terminated, truncated, {}

  def render(self) -> np.ndarray:
    """uint8 [64, 64, 3]: the point white, the target red, on black."""
    frame = np.zeros((64, 64, 3), np.uint8)
    for xy, color in ((self._target, (255, 0, 0)),
                      (self._position, (255, 255, 255))):
      col, row = ((np.asarray(xy) + 1) * 0.5 * 59).astype(int) + 2
      frame[row - 2:row + 3, col - 2:col + 3] = color
    return frame


def make_point_reach(**kwargs) -> gym.Env:
  """The same env from a function (any callable returning a gymnasium.Env)."""
  return PointReach(**kwargs)
