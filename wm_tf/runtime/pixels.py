"""Image observations: renders resized to `env.size`, as uint8 [H, W, C]."""

from __future__ import annotations

from typing import Sequence

import gymnasium as gym
import numpy as np
from PIL import Image

from wm_tf.runtime.env_errors import UnsupportedEnvironment

IMAGE_KEY = 'image'


def image_space(size: Sequence[int], channels: int = 3) -> gym.spaces.Box:
  """Box of uint8 images [height, width, channels]."""
  return gym.spaces.Box(0, 255, (int(size[0]), int(size[1]), channels),
                        np.uint8)


def resize_image(frame: np.ndarray, size: Sequence[int],
                 gray: bool = False) -> np.ndarray:
  """uint8 [H0, W0, 3 or 4] -> uint8 [size[0], size[1], 1 if gray else 3].

  Pillow's bilinear filter widens its support when it shrinks an image, so
  every source pixel contributes (an area average, not point samples that
  would drop thin objects such as a pole or a ball). Gray is ITU-R 601
  luma (0.299 R + 0.587 G + 0.114 B), which keeps red and green apart
  where an equal mean of the channels would not.
  """
  image = Image.fromarray(np.asarray(frame, np.uint8)[..., :3])
  if gray:
    image = image.convert('L')
  height, width = int(size[0]), int(size[1])
  if image.size != (width, height):
    image = image.resize((width, height), Image.BILINEAR)
  array = np.asarray(image, np.uint8)
  return array[..., None] if gray else array


class PixelObservation(gym.ObservationWrapper,
                       gym.utils.RecordConstructorArgs):
  """Replaces an env's observations by {'image': uint8 [H, W, 3]} renders.

  The env must have been made with render_mode='rgb_array'. With
  `keep_state`, the env's own observation stays beside the image: a Dict
  observation's keys as they are, any other under 'state'.
  """

  def __init__(self, env: gym.Env, size: Sequence[int],
               keep_state: bool = False):
    gym.utils.RecordConstructorArgs.__init__(self, size=tuple(size),
                                             keep_state=keep_state)
    super().__init__(env)
    name = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
    if env.render_mode != 'rgb_array':
      raise UnsupportedEnvironment(
          f'Environment {name!r} cannot render rgb_array images (its render '
          f'modes are {env.metadata.get("render_modes", [])}, render_mode '
          f'{env.render_mode!r}), so env.pixels=true cannot apply; allowed: '
          "envs that accept render_mode='rgb_array'.")
    self._size = tuple(size)
    self._keep_state = keep_state
    spaces = {IMAGE_KEY: image_space(size)}
    if keep_state:
      spaces.update(self._state(env.observation_space))
    self.observation_space = gym.spaces.Dict(spaces)

  @staticmethod
  def _state(state) -> dict:
    if isinstance(state, (dict, gym.spaces.Dict)):
      return dict(state.items())
    return {'state': state}

  def observation(self, observation):
    image = {IMAGE_KEY: resize_image(self.env.render(), self._size)}
    if self._keep_state:
      image.update(self._state(observation))
    return image
