"""Action repeat: one agent step is `repeat` steps of the environment."""

from __future__ import annotations

import gymnasium as gym


class ActionRepeat(gym.Wrapper, gym.utils.RecordConstructorArgs):
  """Repeats each action `repeat` times and sums the rewards.

  The repeats stop early when the episode ends (terminated or truncated);
  the observation and info are those of the last step taken.
  """

  def __init__(self, env: gym.Env, repeat: int):
    gym.utils.RecordConstructorArgs.__init__(self, repeat=repeat)
    super().__init__(env)
    self.repeat = repeat

  def step(self, action):
    total = 0.0
    for _ in range(self.repeat):
      observation, reward, terminated, truncated, info = self.env.step(action)
      total += float(reward)
      if terminated or truncated:
        break
    return observation, total, terminated, truncated, info
