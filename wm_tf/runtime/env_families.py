"""Environment families: how the env of an `env.id` is made.

`env.id` reads, in this order:
- '<family>:<name>' with a registered family prefix: 'atari:Pong',
  'dmc:walker_walk' (ENV_FAMILIES);
- 'module:attribute', your own environment: a gymnasium.Env subclass or a
  function returning one, called with env.kwargs ('module:Env-v0', where
  the part after ':' is no Python name, is gymnasium's own form: import
  the module, then make the id it registers);
- anything else: a gymnasium id, made with env.kwargs.

Every family then takes env.pixels (images from render_mode='rgb_array',
where the family does not make images itself), env.action_repeat and
env.max_episode_steps. docs/environments.md describes them.
"""

from __future__ import annotations

import importlib
from typing import Callable, Optional

import gymnasium as gym

from wm_tf.config.schema import EnvConfig
from wm_tf.registry import Registry
from wm_tf.runtime import atari, dmc
from wm_tf.runtime.action_repeat import ActionRepeat
from wm_tf.runtime.env_errors import (UnsupportedEnvironment, did_you_mean,
                                      unknown_name)
from wm_tf.runtime.env_process import ProcessEnv
from wm_tf.runtime.pixels import PixelObservation

# A family's maker: (name after the prefix, options, max_episode_steps,
# render_mode) -> the finished env.
ENV_FAMILIES = Registry('environment family')

_ALLOWED_IDS = ("a gymnasium id (CartPole-v1), 'module:attribute' (your "
                "own gymnasium Env), 'atari:<Game>' or 'dmc:<domain>_<task>'")


def _finish(env: gym.Env, repeat: int, max_episode_steps: Optional[int],
            pixels: Optional[EnvConfig] = None, keep_state: bool = False
            ) -> gym.Env:
  """Action repeat inside (one render per agent step), then images when
  `pixels` (the options) asks for them, then the limit in agent steps."""
  if repeat > 1:
    env = ActionRepeat(env, repeat)
  if pixels is not None and pixels.pixels:
    env = PixelObservation(env, pixels.size, keep_state)
  if max_episode_steps is not None:
    env = gym.wrappers.TimeLimit(env, max_episode_steps)
  return env


def _render_mode(options: EnvConfig, render_mode: Optional[str]
                 ) -> Optional[str]:
  return 'rgb_array' if options.pixels else render_mode


def make_gymnasium(env_id: str, options: EnvConfig,
                   max_episode_steps: Optional[int] = None,
                   render_mode: Optional[str] = None) -> gym.Env:
  """A registered gymnasium id, `max_episode_steps` replacing its limit."""
  if env_id.startswith('wm_tf/'):
    import wm_tf.lab  # noqa: F401  (registers the lab environments)
  kwargs = dict(options.kwargs)
  if max_episode_steps is not None:
    kwargs['max_episode_steps'] = max_episode_steps
  mode = _render_mode(options, render_mode)
  if mode is not None:
    kwargs['render_mode'] = mode
  try:
    env = gym.make(env_id, **kwargs)
  except gym.error.DependencyNotInstalled as e:
    raise UnsupportedEnvironment(
        f'Environment {env_id!r} (config key env.id) needs a package that is '
        f'not installed: {e}') from None
  except (gym.error.Error, ModuleNotFoundError) as e:
    raise UnsupportedEnvironment(
        f'Unknown environment id {env_id!r} (config key env.id): gymnasium '
        f'says: {e}.{did_you_mean(env_id, gym.registry.keys())} Allowed: '
        f'{_ALLOWED_IDS}.') from None
  # The registered TimeLimit (or max_episode_steps) counts the env's steps.
  return _finish(env, options.action_repeat or 1, None, options)


def _import_module(env_id: str, module_name: str):
  try:
    return importlib.import_module(module_name)
  except ModuleNotFoundError as e:
    if e.name is not None and module_name.split('.')[0] != e.name.split('.')[0]:
      raise UnsupportedEnvironment(
          f'Environment {env_id!r} (config key env.id): module '
          f'{module_name!r} imports {e.name!r}, which is not installed.'
      ) from None
    raise unknown_name(
        'environment family or module', module_name,
        ENV_FAMILIES.names(),
        f"{_ALLOWED_IDS}; no module {module_name!r} can be imported") from None


def _entry_point(env_id: str, module_name: str, attribute: str,
                 options: EnvConfig, render_mode: Optional[str]) -> gym.Env:
  module = _import_module(env_id, module_name)
  target: Optional[Callable] = getattr(module, attribute, None)
  if target is None:
    public = [n for n in dir(module) if not n.startswith('_')]
    raise unknown_name(
        f'attribute of module {module_name!r}', attribute, public,
        'a gymnasium.Env subclass or a function returning a gymnasium.Env')
  kwargs = dict(options.kwargs)
  mode = _render_mode(options, render_mode)
  if mode is not None:
    kwargs['render_mode'] = mode
  env = target(**kwargs)
  if not isinstance(env, gym.Env):
    raise UnsupportedEnvironment(
        f'Environment {env_id!r} (config key env.id) returned '
        f'{type(env).__name__}, not a gymnasium.Env; allowed: a '
        'gymnasium.Env subclass or a function returning a gymnasium.Env.')
  return env


def make_from_module(env_id: str, options: EnvConfig,
                     max_episode_steps: Optional[int] = None,
                     render_mode: Optional[str] = None) -> gym.Env:
  """'module:attribute' (your own env) or gymnasium's 'module:Env-v0'."""
  module_name, attribute = env_id.split(':', 1)
  if not attribute.isidentifier():
    _import_module(env_id, module_name)
    return make_gymnasium(attribute, options, max_episode_steps, render_mode)
  env = _entry_point(env_id, module_name, attribute, options, render_mode)
  return _finish(env, options.action_repeat or 1, max_episode_steps, options)


@ENV_FAMILIES.register('atari')
def _atari(name: str, options: EnvConfig, max_episode_steps: Optional[int],
           render_mode: Optional[str]) -> gym.Env:
  # Atari makes its own images, repeats and pools frames itself.
  env = atari.make_atari(name, options, render_mode)
  return _finish(env, 1, max_episode_steps)


def make_dmc_here(name: str, options: EnvConfig,
                  max_episode_steps: Optional[int],
                  render_mode: Optional[str]) -> gym.Env:
  """`dmc:<name>` in this process (see env.dmc.render_process)."""
  env = dmc.make_dmc(name, options, _render_mode(options, render_mode))
  return _finish(env, options.action_repeat or dmc.ACTION_REPEAT,
                 max_episode_steps, options, options.dmc.proprio_with_pixels)


@ENV_FAMILIES.register('dmc')
def _dmc(name: str, options: EnvConfig, max_episode_steps: Optional[int],
         render_mode: Optional[str]) -> gym.Env:
  dmc.check_task(name)  # a clear error here rather than in the child
  if options.dmc.render_process and _render_mode(options, render_mode):
    return ProcessEnv(make_dmc_here, name, options, max_episode_steps,
                      render_mode)
  return make_dmc_here(name, options, max_episode_steps, render_mode)


def make_family_env(env_id: str, options: Optional[EnvConfig] = None,
                    max_episode_steps: Optional[int] = None,
                    render_mode: Optional[str] = None) -> gym.Env:
  """The env `env_id` names, with the settings of `options` (env section).

  Raises:
    UnsupportedEnvironment: an unknown family, game, task, module or id, a
      missing optional package, or an env that is no gymnasium.Env; the
      message says which and what is allowed.
  """
  options = options if options is not None else EnvConfig(id=env_id)
  if ':' not in env_id:
    return make_gymnasium(env_id, options, max_episode_steps, render_mode)
  prefix, name = env_id.split(':', 1)
  if prefix in ENV_FAMILIES.names():
    return ENV_FAMILIES.get(prefix)(name, options, max_episode_steps,
                                    render_mode)
  return make_from_module(env_id, options, max_episode_steps, render_mode)
