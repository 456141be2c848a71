"""The config's `env` section: which environment, and its family's settings.

Part of the schema (`wm_tf.config.schema`, which re-exports these); each
field's comment is its documentation, as there.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Literal, Optional, Tuple


@dataclasses.dataclass
class AtariConfig:
  """`atari:<Game>` (wm_tf/runtime/atari.py): the Atari 100k protocol.

  The defaults are those of DreamerV3's Atari 100k runs; docs/environments.md
  says why each is what it is.
  """
  # Emulator frames whose screens are max-pooled into one observation (the
  # last ones of each agent step): Atari sprites flicker between frames.
  pool_frames: int = 2
  # Probability that the emulator repeats the previous action instead of
  # the new one, at every frame (Machado et al. 2018 propose 0.25; the
  # Atari 100k protocol uses none).
  sticky_actions: float = 0.0
  noop_max: int = 30  # reset: up to this many no-op frames (uniform in 0..max)
  # A lost life: 'ignore' (the episode goes on to game over) or 'end' (it
  # ends the episode as terminated; the next reset starts a new game).
  life_loss: Literal['ignore', 'end'] = 'ignore'
  # All 18 joystick actions; false: only those the game uses.
  full_action_space: bool = False
  gray: bool = False  # one luminance channel [H, W, 1] instead of RGB
  # Emulator frames per episode (108,000 = 30 minutes at 60 Hz), after which
  # it is truncated; counted from the end of the no-op start.
  max_frames: int = 108_000


@dataclasses.dataclass
class DMCConfig:
  """`dmc:<domain>_<task>` (wm_tf/runtime/dmc.py): DeepMind Control Suite."""
  # Camera of the pixel renders; null: by domain (2 for quadruped, whose
  # camera 0 looks at the floor, else 0).
  camera: Optional[int] = None
  # With env.pixels true: keep the proprioceptive keys beside 'image'.
  proprio_with_pixels: bool = False
  # When rendering: step and render the task in a child process without
  # TensorFlow (Mesa's software OpenGL and TensorFlow crash in one
  # process). false: in this process, where MUJOCO_GL=egl uses a GPU.
  render_process: bool = True


@dataclasses.dataclass
class EnvConfig:
  # A gymnasium id (CartPole-v1), 'module:attribute' (a gymnasium Env class
  # or a function returning one), 'atari:<Game>' or 'dmc:<domain>_<task>'
  # (docs/environments.md), whose observation space wm_tf takes
  # (docs/observations.md).
  id: str = 'CartPole-v1'
  num_envs: int = 1  # parallel training environments
  vectorization: Literal['sync', 'async'] = 'sync'  # gymnasium vector env kind
  # Overrides the registered limit: in the env's own steps for gymnasium
  # ids, in agent steps (after action repeat) for the other families.
  max_episode_steps: Optional[int] = None
  # Keyword arguments of gymnasium.make or of the 'module:attribute' entry.
  kwargs: Dict[str, Any] = dataclasses.field(default_factory=dict)
  # Observations {'image': uint8 [H, W, 3]} rendered with render_mode
  # 'rgb_array' instead of the env's own (gymnasium ids, entry points, dmc;
  # atari is always images).
  pixels: bool = False
  size: Tuple[int, ...] = (64, 64)  # [height, width] of image observations
  # Env steps per agent step, rewards summed; null: by family (atari 4,
  # dmc 2, else 1).
  action_repeat: Optional[int] = None
  atari: AtariConfig = dataclasses.field(default_factory=AtariConfig)
  dmc: DMCConfig = dataclasses.field(default_factory=DMCConfig)
