"""`atari:<Game>`: Atari 2600 games through ale-py, the Atari 100k protocol.

Each agent step emulates `action_repeat` frames with the same action and
returns the pixel-wise max of the last `pool_frames` screens, resized to
`size` (docs/environments.md gives every setting, its default and why).
"""

from __future__ import annotations

import collections
import re
from typing import Dict, Optional, Sequence

import gymnasium as gym
import numpy as np

from wm_tf.runtime.env_errors import missing_package, unknown_name
from wm_tf.runtime.pixels import IMAGE_KEY, image_space, resize_image

ACTION_REPEAT = 4  # env.action_repeat when it is null


def _import_ale(env_id: str):
  try:
    import ale_py  # pylint: disable=import-outside-toplevel
    import ale_py.env  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise missing_package(env_id, 'ale-py', 'atari') from None
  ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)  # no banner
  return ale_py


def game_names(ale_py) -> Dict[str, str]:
  """CamelCase names ('SpaceInvaders') -> ale-py ROM ids ('space_invaders')."""
  return {''.join(part.capitalize() for part in rom.split('_')): rom
          for rom in ale_py.roms.get_all_rom_ids()}


def rom_id(game: str, ale_py) -> str:
  """'Pong', 'SpaceInvaders' or 'space_invaders' -> the ROM id, or raises."""
  names = game_names(ale_py)
  roms = set(names.values())
  snake = re.sub(r'(?<=[a-z0-9])(?=[A-Z])', '_', game).lower()
  for candidate in (game, snake, game.lower()):
    if candidate in roms:
      return candidate
    if candidate in names:
      return names[candidate]
  raise unknown_name('Atari game', game, names,
                     'atari:<Game> with a game of ale-py, e.g. atari:Pong, '
                     'atari:Breakout, atari:SpaceInvaders')


class AtariEnv(gym.Env):
  """One Atari game; observations {'image': uint8 [H, W, 3 or 1]}.

  Args:
    rom: the ale-py ROM id, e.g. 'pong'.
    action_repeat: emulator frames per agent step, rewards summed.
    size: [height, width] of the observation.
    pool_frames: the observation is the max over the screens of the last
      this many emulated frames (1: the last screen).
    sticky_actions: per-frame probability that the emulator keeps the
      previous action.
    noop_max: a reset emulates a uniform 0..noop_max no-op frames.
    life_loss: 'ignore', or 'end': a lost life terminates the episode.
    full_action_space: all 18 actions instead of the game's minimal set.
    gray: one luminance channel.
    max_frames: frames per episode (after the no-ops) before truncation.
  """

  metadata = {'render_modes': ['rgb_array']}

  def __init__(self, rom: str, action_repeat: int = ACTION_REPEAT,
               size: Sequence[int] = (64, 64), pool_frames: int = 2,
               sticky_actions: float = 0.0, noop_max: int = 30,
               life_loss: str = 'ignore', full_action_space: bool = False,
               gray: bool = False, max_frames: int = 108_000,
               render_mode: Optional[str] = None):
    import ale_py  # pylint: disable=import-outside-toplevel
    import ale_py.env  # pylint: disable=import-outside-toplevel
    # frameskip=1: the repeat and the pooling are ours, so every frame's
    # screen is seen; the emulator applies the sticky actions per frame.
    self._ale_env = ale_py.env.AtariEnv(
        rom, obs_type='rgb', frameskip=1,
        repeat_action_probability=sticky_actions,
        full_action_space=full_action_space)
    self.ale = self._ale_env.ale
    self._noop = ale_py.Action.NOOP
    self.action_space = self._ale_env.action_space
    self.observation_space = gym.spaces.Dict(
        {IMAGE_KEY: image_space(size, 1 if gray else 3)})
    self.render_mode = render_mode
    self._repeat, self._size, self._gray = action_repeat, tuple(size), gray
    self._noop_max, self._life_loss = noop_max, life_loss
    self._max_frames = max_frames
    self._screens = collections.deque(maxlen=pool_frames)
    self._frames, self._lives = 0, 0

  def reset(self, *, seed: Optional[int] = None, options=None):
    super().reset(seed=seed)
    # Seeding the emulator reloads the ROM; without a seed it goes on with
    # its own random stream.
    screen, info = self._ale_env.reset(seed=seed)
    noops = int(self.np_random.integers(self._noop_max + 1))
    for _ in range(noops):
      self.ale.act(self._noop)
      if self.ale.game_over():
        self.ale.reset_game()
      screen = self.ale.getScreenRGB()
    self._screens.extend([screen] * self._screens.maxlen)
    self._frames, self._lives = 0, self.ale.lives()
    info = {'lives': self._lives, 'frames': 0, 'noops': noops}
    return self._observation(), info

  def step(self, action):
    reward, terminated, truncated = 0.0, False, False
    for _ in range(self._repeat):
      screen, frame_reward, over, _, _ = self._ale_env.step(action)
      self._screens.append(screen)
      reward += float(frame_reward)
      self._frames += 1
      lives = self.ale.lives()
      lost_life = 0 < lives < self._lives
      self._lives = lives
      terminated = over or (self._life_loss == 'end' and lost_life)
      truncated = not terminated and self._frames >= self._max_frames
      if terminated or truncated:
        break
    info = {'lives': self._lives, 'frames': self._frames}
    return self._observation(), reward, terminated, truncated, info

  def _observation(self) -> dict:
    pooled = np.max(np.stack(self._screens), axis=0)
    return {IMAGE_KEY: resize_image(pooled, self._size, self._gray)}

  def render(self) -> np.ndarray:
    """The last screen, uint8 [210, 160, 3] (before pooling and resizing)."""
    return self._screens[-1].copy()

  def close(self):
    self._ale_env.close()


def make_atari(game: str, options, render_mode: Optional[str] = None
               ) -> gym.Env:
  """The env of `atari:<game>` with the settings of `options` (EnvConfig)."""
  ale_py = _import_ale(f'atari:{game}')
  a = options.atari
  return AtariEnv(
      rom_id(game, ale_py), options.action_repeat or ACTION_REPEAT,
      options.size, a.pool_frames, a.sticky_actions, a.noop_max, a.life_loss,
      a.full_action_space, a.gray, a.max_frames, render_mode)
