"""Bounce: at the peg a ball goes left or right, a bimodal next state."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from wm_tf.lab.lab_env import LabEnv, Outcomes, outcomes

SPEED = 0.25  # positions are multiples of SPEED in [-1, 1]


class Bounce(LabEnv):
  """A ball on a line with a peg at 0 and walls at -1 and +1; a paddle.

  Observation float32 [3]: (x, d, p), the ball's position x in {-1, -0.75,
  ..., 1}, its direction d in {-1, +1} and the paddle's side p in {-1, +1}.
  Actions: Discrete(2), the paddle's next side p' = 2 a - 1. True law:

    d' = +1 or -1 with probability 1/2 each   if x = 0 (the peg),
    d' = -d                                    if |x| = 1 (a wall),
    d' = d                                     otherwise;
    x' = x + 0.25 d',   p' = 2 a - 1;
    reward +1 if |x'| = 1 and p' = sign(x'), -1 if |x'| = 1 and p' != sign(x'),
    else 0.

  So at the peg the next state is (+0.25, +1, p') or (-0.25, -1, p'),
  whose mean (0, 0, p') never happens. Episodes start at (0, +1, +-1) and
  never terminate; the registered id truncates them after 40 steps. The
  ball meets a wall every 8 steps: the best policy moves the paddle to the
  side the ball goes to, +5 per episode; a random paddle gets 0 on average.
  """

  def __init__(self):
    super().__init__()
    self.observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    self.action_space = gym.spaces.Discrete(2)

  def initial_state(self, rng):
    return np.array([0.0, 1.0, rng.choice([-1.0, 1.0])], np.float32)

  def probe_states(self, n, rng):
    """States at the peg (where the law is bimodal)."""
    return np.stack([self.initial_state(rng) for _ in range(n)])

  def true_next_distribution(self, state, action) -> Outcomes:
    x, d, _ = (float(v) for v in state)
    paddle = 2.0 * int(action) - 1.0
    if abs(x) < SPEED / 2:
      directions = ((1.0, 0.5), (-1.0, 0.5))
    elif abs(x) > 1 - SPEED / 2:
      directions = ((-d, 1.0),)
    else:
      directions = ((d, 1.0),)
    rows = []
    for direction, p in directions:
      position = round((x + SPEED * direction) / SPEED) * SPEED
      reward = 0.0
      if abs(position) > 1 - SPEED / 2:
        reward = 1.0 if paddle == np.sign(position) else -1.0
      rows.append(((position, direction, paddle), p, reward, False))
    return outcomes(rows)
