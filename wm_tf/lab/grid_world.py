"""GridWorld: a deterministic 5 x 5 grid, where point estimates should do."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from wm_tf.lab.lab_env import LabEnv, Outcomes, outcomes

SIZE = 5
MOVES = ((-1, 0), (1, 0), (0, -1), (0, 1))  # up, down, left, right
STEP_REWARD, GOAL_REWARD = -0.05, 1.0
# Per cell the move brings the agent nearer the goal (Manhattan distance):
# without it a 5 x 5 grid left the actor no signal in a lab budget.
PROGRESS_REWARD = 0.1


def cell_observation(row: int, col: int) -> np.ndarray:
  return np.array([row, col], np.float32) / (SIZE - 1)


class GridWorld(LabEnv):
  """Walk from the top-left cell to the bottom-right one.

  Observation float32 [2]: (row, col) / 4, each in {0, 0.25, ..., 1}.
  Actions: Discrete(4), up, down, left, right. True law (deterministic,
  one outcome of probability 1): the agent moves one cell in the action's
  direction unless a wall is there (then it stays); the reward is -0.05
  plus 0.1 times the decrease of the Manhattan distance to (4, 4) (+0.05
  for a move nearer, -0.15 for one away, -0.05 against a wall), plus 1 on
  reaching (4, 4), which terminates the episode. Episodes start at (0, 0);
  the registered id truncates them after 30 steps. The best return is
  8 * 0.05 + 1 = 1.4 (8 moves).
  """

  def __init__(self):
    super().__init__()
    self.observation_space = gym.spaces.Box(0.0, 1.0, (2,), np.float32)
    self.action_space = gym.spaces.Discrete(4)

  def initial_state(self, rng):
    return cell_observation(0, 0)

  def probe_states(self, n, rng):
    """Uniformly drawn cells other than the goal."""
    cells = rng.integers(0, SIZE * SIZE - 1, size=n)
    return np.stack([cell_observation(c // SIZE, c % SIZE) for c in cells])

  def true_next_distribution(self, state, action) -> Outcomes:
    row, col = (int(round(v * (SIZE - 1))) for v in state)
    before = 2 * (SIZE - 1) - row - col
    dr, dc = MOVES[int(action)]
    row = min(max(row + dr, 0), SIZE - 1)
    col = min(max(col + dc, 0), SIZE - 1)
    after = 2 * (SIZE - 1) - row - col
    goal = after == 0
    reward = (STEP_REWARD + PROGRESS_REWARD * (before - after) +
              (GOAL_REWARD if goal else 0.0))
    return outcomes([(cell_observation(row, col), 1.0, reward, goal)])
