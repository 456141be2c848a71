"""An environment stepped in a child process of its own.

The child is a fresh interpreter (`python -m wm_tf.runtime.env_process`)
that imports only what makes the env: not TensorFlow. That is the point:
Mesa's software OpenGL (llvmpipe, behind MUJOCO_GL=osmesa or egl without a
GPU) and TensorFlow each carry an LLVM, and a process that holds both
crashes when the first render context is made. multiprocessing's 'spawn'
would import the parent's main module (launch.train, and TensorFlow with
it) in the child, so the child is started with subprocess instead, and
calls and results cross its stdin and stdout as pickles.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from typing import Any, Callable

import gymnasium as gym

from wm_tf.runtime.env_errors import UnsupportedEnvironment


class ProcessEnv(gym.Env):
  """The env `factory(*args)` makes, run in a child process.

  `factory` must be importable by name (a module-level function) and
  `args` picklable. reset, step, render and close are forwarded; the
  spaces, metadata, render_mode and spec are the child env's.
  """

  def __init__(self, factory: Callable[..., gym.Env], *args: Any):
    root = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    path = os.pathsep.join([root] + sys.path)
    self._child = subprocess.Popen(
        [sys.executable, '-m', 'wm_tf.runtime.env_process'],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        env={**os.environ, 'PYTHONPATH': path})
    self._closed = False
    (self.observation_space, self.action_space, self.metadata,
     self.render_mode, self.spec) = self._call('make', factory, args)

  def _call(self, method: str, *args: Any) -> Any:
    try:
      pickle.dump((method, args), self._child.stdin)
      self._child.stdin.flush()
      status, result = pickle.load(self._child.stdout)
    except (EOFError, BrokenPipeError, OSError) as e:
      raise RuntimeError(
          f'The environment process exited (code {self._child.poll()}) '
          f'during {method}: {e}') from None
    if status == 'error':
      raise result
    return result

  def reset(self, *, seed=None, options=None):
    super().reset(seed=seed)
    return self._call('reset', seed, options)

  def step(self, action):
    return self._call('step', action)

  def render(self):
    return self._call('render')

  def close(self):
    if self._closed:
      return
    self._closed = True
    try:
      self._call('close')
    except RuntimeError:
      pass
    self._child.stdin.close()
    self._child.wait(timeout=30)

  def __del__(self):
    if not getattr(self, '_closed', True) and self._child.poll() is None:
      self._child.kill()


def _serve(requests, replies) -> None:
  env = None
  while True:
    try:
      method, args = pickle.load(requests)
    except EOFError:
      return
    try:
      if method == 'make':
        factory, factory_args = args
        env = factory(*factory_args)
        result = (env.observation_space, env.action_space, env.metadata,
                  env.render_mode, env.spec)
      elif method == 'reset':
        result = env.reset(seed=args[0], options=args[1])
      else:
        result = getattr(env, method)(*args)
      reply = ('ok', result)
    except Exception as e:  # pylint: disable=broad-except
      reply = ('error', e if _picklable(e)
               else UnsupportedEnvironment(f'{type(e).__name__}: {e}'))
    pickle.dump(reply, replies)
    replies.flush()
    if method == 'close':
      return


def _picklable(value: Any) -> bool:
  try:
    pickle.dumps(value)
    return True
  except Exception:  # pylint: disable=broad-except
    return False


if __name__ == '__main__':
  # Replies go to a private copy of stdout; what the env's libraries print
  # goes to stderr instead of into the pickles.
  replies = os.fdopen(os.dup(1), 'wb')
  os.dup2(2, 1)
  _serve(sys.stdin.buffer, replies)
  replies.close()
  # The env is closed: skip the interpreter's teardown, in which render
  # libraries free their contexts a second time and print errors.
  os._exit(0)
