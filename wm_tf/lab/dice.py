"""Dice: the next state is a die roll, so its mean is a face that never comes up."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from wm_tf.lab.lab_env import LabEnv, Outcomes, outcomes

# Reward on arriving at face 1 .. 6: the expected reward of a fair roll is
# (-1 - 1 + 1 + 4) / 6 = 1/2, above the safe die's 0, but the reward of the
# mean face (3.5, or the one-hot [1/6] * 6) is no face's reward at all.
FACE_REWARDS = (-1.0, -1.0, 0.0, 0.0, 1.0, 4.0)
SAFE_FACE = 3
ROLL, SAFE = 0, 1


def one_hot(face: int) -> np.ndarray:
  observation = np.zeros(6, np.float32)
  observation[face - 1] = 1.0
  return observation


class Dice(LabEnv):
  """A die game: roll a fair die or take a safe die that always shows 3.

  Observation: the face shown, one-hot, float32 [6]. Actions: Discrete(2),
  0 rolls the fair die, 1 takes the safe die. True law, for any state:

    action 0: next face f uniform on 1 .. 6 (probability 1/6 each),
    action 1: next face 3 (probability 1),

  and the reward on arriving at face f is FACE_REWARDS[f - 1]
  (-1, -1, 0, 0, +1, +4). Episodes never terminate; the registered id
  truncates them after 20 steps. The best policy always rolls: 1/2 per
  step in expectation, 10 per episode; the safe die gives 0.
  """

  def __init__(self):
    super().__init__()
    self.observation_space = gym.spaces.Box(0.0, 1.0, (6,), np.float32)
    self.action_space = gym.spaces.Discrete(2)

  def initial_state(self, rng):
    return one_hot(int(rng.integers(1, 7)))

  def true_next_distribution(self, state, action) -> Outcomes:
    faces = range(1, 7) if int(action) == ROLL else (SAFE_FACE,)
    p = 1.0 / len(faces)
    return outcomes([(one_hot(f), p, FACE_REWARDS[f - 1], False)
                     for f in faces])
