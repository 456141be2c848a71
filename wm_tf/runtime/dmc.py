"""`dmc:<domain>_<task>`: the DeepMind Control Suite through dm_control.

Observations are the task's proprioceptive arrays as a Dict of float32
vectors (a scalar as [1]); with env.pixels the env renders {'image': uint8
[H, W, 3]} from one camera instead. Actions are a Box in [-1, 1].

Rendering needs an OpenGL backend, MuJoCo's MUJOCO_GL: without a display
and with MUJOCO_GL unset we choose 'osmesa' (software, Debian package
libosmesa6); 'egl' (libegl1 with Mesa, or a GPU driver) is the other. By
default the renders happen in a child process (env.dmc.render_process),
since Mesa and TensorFlow cannot share one (`import_suite`).
"""

from __future__ import annotations

import os
import sys
import threading
import weakref
from typing import Dict, Optional, Sequence, Tuple

import gymnasium as gym
import numpy as np

from wm_tf.runtime.env_errors import missing_package, unknown_name

ACTION_REPEAT = 2  # env.action_repeat when it is null
# env.dmc.camera when it is null: quadruped's camera 0 shows little of it.
CAMERA_BY_DOMAIN = {'quadruped': 2}
# Short domain names that DreamerV3's task names use.
DOMAIN_ALIASES = {'cup': 'ball_in_cup'}

_OPEN_ENVS: 'weakref.WeakSet[DMCEnv]' = weakref.WeakSet()
_HOOKED: list = []  # whether the exit hook is registered


def _free_open_envs() -> None:
  for env in list(_OPEN_ENVS):
    env.close()


def render_backend() -> Optional[str]:
  """The MUJOCO_GL a rendering process uses: the user's, else 'osmesa'
  where there is no display (else None: dm_control's own choice)."""
  if 'MUJOCO_GL' in os.environ:
    return os.environ['MUJOCO_GL']
  return None if os.environ.get('DISPLAY') else 'osmesa'


def import_suite(env_id: str = 'dmc', render_here: bool = False):
  """dm_control.suite, imported with a render backend only if `render_here`.

  dm_control reads MUJOCO_GL once, at its import. A process that holds
  TensorFlow must not load Mesa's OpenGL at all (it aborts at exit, or
  crashes at the first render): there dm_control is imported with
  rendering disabled, and renders happen in a child process
  (wm_tf.runtime.env_process).
  """
  if 'dm_control.suite' not in sys.modules:
    backend = render_backend() if render_here else 'disable'
    saved = os.environ.get('MUJOCO_GL')
    if backend is not None:
      os.environ['MUJOCO_GL'] = backend
    try:
      from dm_control import suite  # pylint: disable=import-outside-toplevel
    except ImportError:
      raise missing_package(env_id, 'dm_control', 'dmc') from None
    finally:
      if saved is None:
        os.environ.pop('MUJOCO_GL', None)
      else:
        os.environ['MUJOCO_GL'] = saved
  suite = sys.modules['dm_control.suite']
  if suite is None:  # an import that failed before
    raise missing_package(env_id, 'dm_control', 'dmc')
  _close_envs_before_render_threads_stop()
  return suite


def _close_envs_before_render_threads_stop() -> None:
  # dm_control renders on a thread pool that interpreter exit shuts down
  # before its render contexts are freed, which then print errors.
  # threading's exit hooks run last registered first, so a hook registered
  # after the pool's (concurrent.futures registers it on import) closes
  # the envs left open while the pool still runs.
  register = getattr(threading, '_register_atexit', None)
  if register is not None and not _HOOKED:
    import concurrent.futures.thread  # pylint: disable=import-outside-toplevel,unused-import
    register(_free_open_envs)
    _HOOKED.append(True)


def split_task(name: str, suite) -> Tuple[str, str]:
  """'walker_walk' -> ('walker', 'walk'), or raises naming close matches."""
  names = {f'{d}_{t}': (d, t) for d, t in suite.ALL_TASKS}
  for alias, domain in DOMAIN_ALIASES.items():
    if name.startswith(alias + '_'):
      name = domain + name[len(alias):]
  if name in names:
    return names[name]
  raise unknown_name('DeepMind Control task', name, names,
                     'dmc:<domain>_<task> with a task of dm_control.suite, '
                     'e.g. dmc:cartpole_balance, dmc:walker_walk, '
                     'dmc:cheetah_run')


def _vector_space(spec) -> gym.spaces.Box:
  shape = tuple(int(n) for n in spec.shape) or (1,)
  return gym.spaces.Box(-np.inf, np.inf, (int(np.prod(shape)),), np.float32)


class DMCEnv(gym.Env):
  """One dm_control suite task as a gymnasium env (no action repeat).

  Observations: {key: float32 [n]} for each of the task's observations
  (arrays flattened, scalars [1]). Actions: float32 [A] in [-1, 1], mapped
  linearly to the task's bounds. An episode ends at the task's time limit
  (1,000 control steps for the suite), as truncated; a last step with
  discount 0 is terminated.

  Args:
    domain, task: e.g. 'cartpole', 'balance'.
    size: [height, width] of `render()`.
    camera: camera id of `render()`; None: by domain.
  """

  metadata = {'render_modes': ['rgb_array']}

  def __init__(self, domain: str, task: str, size: Sequence[int] = (64, 64),
               camera: Optional[int] = None,
               render_mode: Optional[str] = None):
    suite = import_suite(f'dmc:{domain}_{task}', render_mode is not None)
    self._env = suite.load(domain, task)
    self._size = (int(size[0]), int(size[1]))
    self._camera = CAMERA_BY_DOMAIN.get(domain, 0) if camera is None else camera
    self.render_mode = render_mode
    self.observation_space = gym.spaces.Dict(
        {k: _vector_space(s) for k, s in self._env.observation_spec().items()})
    spec = self._env.action_spec()
    self._low = np.broadcast_to(spec.minimum, spec.shape).astype(np.float64)
    self._high = np.broadcast_to(spec.maximum, spec.shape).astype(np.float64)
    # The suite's bounds are [-1, 1]: then actions pass unchanged.
    self._rescale = not (np.all(self._low == -1) and np.all(self._high == 1))
    self.action_space = gym.spaces.Box(-1.0, 1.0, spec.shape, np.float32)
    _OPEN_ENVS.add(self)

  def _observation(self, time_step) -> Dict[str, np.ndarray]:
    return {k: np.asarray(v, np.float32).reshape(-1)
            for k, v in time_step.observation.items()}

  def reset(self, *, seed: Optional[int] = None, options=None):
    super().reset(seed=seed)
    if seed is not None:
      # The task draws its initial states from this generator.
      self._env.task.random.seed(seed)
    return self._observation(self._env.reset()), {}

  def step(self, action):
    action = np.clip(np.asarray(action, np.float64), -1.0, 1.0)
    if self._rescale:
      action = self._low + (action + 1.0) * 0.5 * (self._high - self._low)
    time_step = self._env.step(action)
    terminated = bool(time_step.last() and time_step.discount == 0)
    truncated = bool(time_step.last() and not terminated)
    return (self._observation(time_step), float(time_step.reward or 0.0),
            terminated, truncated, {})

  def render(self) -> np.ndarray:
    """uint8 [height, width, 3] from the camera."""
    return self._env.physics.render(*self._size, camera_id=self._camera)

  def close(self):
    if self in _OPEN_ENVS:
      _OPEN_ENVS.discard(self)
      self._env.physics.free()


def check_task(name: str) -> None:
  """Raises UnsupportedEnvironment unless `dmc:<name>` can be made."""
  split_task(name, import_suite(f'dmc:{name}'))


def make_dmc(name: str, options, render_mode: Optional[str] = None
             ) -> gym.Env:
  """The env of `dmc:<name>`, without action repeat or pixels (the families
  wrap it), rendering at options.size from options.dmc.camera."""
  suite = import_suite(f'dmc:{name}', render_mode is not None)
  domain, task = split_task(name, suite)
  return DMCEnv(domain, task, options.size, options.dmc.camera, render_mode)
