"""A small gymnasium environment with a Dict observation, for the tests.

`DictObservationEnv`: {'image': uint8 [16, 16, 3] with a bright square at
the agent's position, 'vector': float32 [3] (position, velocity, time)},
Discrete(2) actions (left, right), reward 1 for staying in the middle
third, episodes of 20 steps.
"""

import gymnasium as gym
import numpy as np

ID = 'WmTfDictObservation-v0'


class DictObservationEnv(gym.Env):
  metadata = {'render_modes': []}

  def __init__(self, size: int = 16):
    self.size = size
    self.observation_space = gym.spaces.Dict({
        'image': gym.spaces.Box(0, 255, (size, size, 3), np.uint8),
        'vector': gym.spaces.Box(-np.inf, np.inf, (3,), np.float32),
    })
    self.action_space = gym.spaces.Discrete(2)
    self._position = 0.0
    self._t = 0

  def _observation(self):
    image = np.zeros((self.size, self.size, 3), np.uint8)
    column = int(np.clip((self._position + 1) / 2 * (self.size - 4), 0,
                         self.size - 4))
    image[6:10, column:column + 4] = (255, 128, 0)
    vector = np.array([self._position, self._velocity, self._t / 20],
                      np.float32)
    return {'image': image, 'vector': vector}

  def reset(self, *, seed=None, options=None):
    super().reset(seed=seed)
    self._position = float(self.np_random.uniform(-0.5, 0.5))
    self._velocity = 0.0
    self._t = 0
    return self._observation(), {}

  def step(self, action):
    self._velocity = 0.1 if int(action) == 1 else -0.1
    self._position = float(np.clip(self._position + self._velocity, -1, 1))
    self._t += 1
    reward = float(abs(self._position) < 1 / 3)
    return self._observation(), reward, False, self._t >= 20, {}


def register() -> str:
  if ID not in gym.registry:
    gym.register(ID, entry_point=DictObservationEnv)
  return ID
