"""Corridor: a slippery walk to the end, in a short and a long version."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from wm_tf.lab.lab_env import LabEnv, Outcomes, outcomes

SLIP = 0.2  # probability that a move leaves the agent where it is
MOVE_REWARD, GOAL_REWARD = 0.1, 1.0


class Corridor(LabEnv):
  """Cells 0 .. length-1; the episode ends at the last one.

  Observation float32 [1]: position / (length - 1) in [0, 1]. Actions:
  Discrete(2), 0 left, 1 right. True law: with probability 0.8 the agent
  moves one cell (staying put at cell 0 when moving left), with
  probability 0.2 it stays; the reward is +0.1 for a move right, -0.1 for a
  move left, 0 for staying, plus 1 on reaching the last cell, which
  terminates the episode. Episodes start at cell 0.

  Registered as wm_tf/Corridor-short-v0 (length 6, truncated after 20
  steps: the best episode takes 5 / 0.8 = 6.25 steps on average) and
  wm_tf/Corridor-long-v0 (length 60, truncated after 200 steps: about 74
  steps), the two sides of the design's "episodes < 50 steps".
  """

  def __init__(self, length: int = 6):
    super().__init__()
    if length < 2:
      raise ValueError(f'Corridor length must be at least 2, got {length}.')
    self.length = int(length)
    self.observation_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
    self.action_space = gym.spaces.Discrete(2)

  def _observation(self, cell: int) -> np.ndarray:
    return np.array([cell / (self.length - 1)], np.float32)

  def initial_state(self, rng):
    return self._observation(0)

  def probe_states(self, n, rng):
    """Uniformly drawn cells other than the last."""
    return np.stack([self._observation(int(c))
                     for c in rng.integers(0, self.length - 1, size=n)])

  def true_next_distribution(self, state, action) -> Outcomes:
    cell = int(round(float(state[0]) * (self.length - 1)))
    target = min(max(cell + (1 if int(action) == 1 else -1), 0),
                 self.length - 1)
    rows = []
    for end, p in ((target, 1.0 - SLIP), (cell, SLIP)):
      reward = MOVE_REWARD * (end - cell)
      done = end == self.length - 1
      rows.append((self._observation(end), p,
                   reward + (GOAL_REWARD if done else 0.0), done))
    if target == cell:  # a wall: both outcomes are the same
      rows = [(rows[1][0], 1.0, rows[1][2], rows[1][3])]
    return outcomes(rows)
