"""OODProbe: training data covers the left half; the right half is held out."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from wm_tf.lab.lab_env import LabEnv, Outcomes, outcomes

STEP = 0.05  # largest move per step and axis


class OODProbe(LabEnv):
  """A point in the square [-1, 1]^2 pushed by bounded actions and a current.

  Observation float32 [2]: (x, y). Actions: Box [-1, 1]^2. True law
  (deterministic, one outcome of probability 1):

    x' = clip(x + 0.05 a_x, -1, 1),
    y' = clip(y + 0.05 a_y + 0.05 sin(3 x), -1, 1),
    reward -y'^2 (stay on the line y = 0), never terminates.

  Episodes start uniformly in x in [-1, 0], y in [-1, 1] and the
  registered id truncates them after 10 steps, so no episode gets past
  x = 0.5: the replay covers `covered_states`, and `held_out_states`
  (x in [0.6, 1]) are never seen. The lab asks whether a model's
  uncertainty separates the two.
  """

  def __init__(self):
    super().__init__()
    self.observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

  def initial_state(self, rng):
    return np.array([rng.uniform(-1, 0), rng.uniform(-1, 1)], np.float32)

  def covered_states(self, n, rng) -> np.ndarray:
    """[n, 2] states of the region episodes start in."""
    return np.stack([self.initial_state(rng) for _ in range(n)])

  def held_out_states(self, n, rng) -> np.ndarray:
    """[n, 2] states no episode reaches (x >= 0.6)."""
    return np.stack([rng.uniform(0.6, 1, n), rng.uniform(-1, 1, n)],
                    1).astype(np.float32)

  probe_states = covered_states

  def true_next_distribution(self, state, action) -> Outcomes:
    x, y = (float(v) for v in state)
    ax, ay = np.clip(np.asarray(action, np.float64), -1.0, 1.0)
    x2 = float(np.clip(x + STEP * ax, -1, 1))
    y2 = float(np.clip(y + STEP * ay + STEP * np.sin(3 * x), -1, 1))
    return outcomes([((x2, y2), 1.0, -y2 * y2, False)])
