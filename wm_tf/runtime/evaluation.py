"""Evaluating a trained policy: episode returns, and a video of episodes.

The policy comes from a run directory (its newest readable checkpoint) or
from a SavedModel written by `launch.export`; either way it is called
through the same tensor-only function (see `wm_tf.runtime.export`):

    action(observation {key: [1, *shape]}, state [1, S], deterministic [],
           seed [2])
      -> {'action': env action [1] or [1, A], 'next_state': [1, S], ...}
    initial_state(batch_size []) -> {'state': [batch_size, S]}

The state (the recurrent latent and the previous action, or S = 0 for a
stateless representation) is carried along each episode and restarts from
`initial_state` at each reset. Episodes run one after another in a single
environment, which renders
(`render_mode='rgb_array'`) when a video is asked for.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Callable, Dict, Optional

import gymnasium as gym
import numpy as np
import tensorflow as tf

from wm_tf import config as config_lib
from wm_tf.config.schema import EnvConfig
from wm_tf.runtime import checkpoints as checkpoints_lib
from wm_tf.runtime.environments import UnsupportedEnvironment, make_env
from wm_tf.runtime.observation_spaces import (ObservationConverter,
                                              UnsupportedObservation)
from wm_tf.specs import ObservationSpec, Observations


class EvaluationError(ValueError):
  """A policy, environment or video that cannot be evaluated or written."""


@dataclasses.dataclass
class LoadedPolicy:
  """A policy to evaluate, whatever it was loaded from."""
  action: Callable[..., Dict[str, tf.Tensor]]
  initial_state: Callable[..., Dict[str, tf.Tensor]]
  observations: Observations  # the keys `action` takes
  # The training env's id: from the run directory, or from the SavedModel's
  # recorded env section (None for a SavedModel exported without one).
  env_id: Optional[str]
  max_episode_steps: Optional[int]
  source: str  # what was loaded, for messages
  owner: object = None  # keeps a loaded SavedModel (its variables) alive
  # The run's env section (pixels, action repeat, family settings); used
  # when evaluating on its own env.id.
  env_options: Optional[EnvConfig] = None


def policy_from_run(logdir: str) -> LoadedPolicy:
  """Rebuilds a run's agent and restores its newest readable checkpoint."""
  # Imported here: export wires the serving functions we reuse.
  from wm_tf.runtime.export import ServingPolicy
  try:
    run = checkpoints_lib.restore_agent(logdir)
  except checkpoints_lib.RunDirectoryError as e:
    raise EvaluationError(str(e)) from None
  serving = ServingPolicy(run.agent.policy, run.spec)
  return LoadedPolicy(serving.act, serving.initial_state,
                      run.spec.observations, run.config.env.id,
                      run.config.env.max_episode_steps, run.restored.path,
                      env_options=run.config.env)


def policy_from_saved_model(path: str) -> LoadedPolicy:
  """Loads a SavedModel written by `launch.export`."""
  if not os.path.isdir(path):
    raise EvaluationError(f'SavedModel directory {path!r} does not exist.')
  try:
    model = tf.saved_model.load(path)
  except (OSError, ValueError, tf.errors.OpError) as e:
    raise EvaluationError(f'{path!r} is not a loadable SavedModel: {e}'
                          ) from None
  signatures = getattr(model, 'signatures', {})
  missing = [name for name in ('serving_default', 'initial_state',
                               'metadata') if name not in signatures]
  if missing:
    raise EvaluationError(
        f'SavedModel {path!r} lacks the signature(s) {missing}; export it '
        'with launch.export.')
  action = signatures['serving_default']
  inputs = action.structured_input_signature[1]
  metadata = signatures['metadata']()
  keys = [k.decode() for k in metadata['observation_keys'].numpy()]
  observations = tuple(
      ObservationSpec(k, inputs[k].shape[1:], inputs[k].dtype.name)
      for k in keys)

  def act(observation, state, deterministic, seed):
    return action(**observation, state=state, deterministic=deterministic,
                  seed=seed)

  def initial_state(batch_size):
    return signatures['initial_state'](batch_size=batch_size)

  env = _recorded_env(metadata, path)
  return LoadedPolicy(act, initial_state, observations,
                      env.id if env else None,
                      env.max_episode_steps if env else None, path,
                      owner=model, env_options=env)


def _recorded_env(metadata: Dict[str, tf.Tensor], path: str
                  ) -> Optional[EnvConfig]:
  """The env section a SavedModel's metadata records, if it has one."""
  if 'env_config' not in metadata:
    return None
  try:
    data = json.loads(metadata['env_config'].numpy().decode())
    return config_lib.from_dict({'env': data}).env
  except (ValueError, config_lib.ConfigError) as e:
    raise EvaluationError(
        f'SavedModel {path!r} records an env config that wm_tf cannot read '
        f'({e}); name the environment with --env.') from None


def _env_action(output: tf.Tensor):
  action = output.numpy()[0]
  return int(action) if action.ndim == 0 else action


def run_episodes(policy: LoadedPolicy, env_id: str, episodes: int, seed: int,
                 max_episode_steps: Optional[int] = None,
                 deterministic: bool = True,
                 on_frame: Optional[Callable[[np.ndarray], None]] = None,
                 record_episodes: int = 0) -> np.ndarray:
  """Plays `episodes` episodes; returns their returns, float64 [episodes].

  Episode i resets with seed `seed + i`. With `on_frame`, the first
  `record_episodes` episodes are rendered and each frame [H, W, 3] uint8
  is passed to it.

  Raises:
    EvaluationError: the environment does not fit the policy, or cannot
      render.
  """
  render = on_frame is not None and record_episodes > 0
  if render:
    # rgb_array frames are drawn off-screen; without this, SDL (pygame)
    # probes for a display and prints errors where there is none.
    os.environ.setdefault('SDL_VIDEODRIVER', 'dummy')
  try:
    env = make_env(env_id, max_episode_steps,
                   render_mode='rgb_array' if render else None,
                   options=(policy.env_options if env_id == policy.env_id
                            else None))
  except UnsupportedEnvironment as e:
    raise EvaluationError(str(e)) from None
  try:
    if render and 'rgb_array' not in env.metadata.get('render_modes', []):
      raise EvaluationError(
          f'{env_id} cannot render images (its render modes are '
          f'{env.metadata.get("render_modes", [])}); run without --video.')
    convert = _converter(policy, env, env_id)
    returns = np.zeros(episodes)
    for i in range(episodes):
      observation, _ = env.reset(seed=seed + i)
      state = policy.initial_state(tf.constant(1))['state']
      recording = render and i < record_episodes
      if recording:
        on_frame(_render(env, env_id))
      done, t = False, 0
      while not done:
        out = policy.action(
            {k: tf.constant(v[None]) for k, v in convert(observation).items()},
            state,
            tf.constant(deterministic), tf.constant([seed + i, t], tf.int32))
        state = out['next_state']
        observation, reward, terminated, truncated, _ = env.step(
            _env_action(out['action']))
        returns[i] += float(reward)
        done = terminated or truncated
        t += 1
        if recording:
          on_frame(_render(env, env_id))
    return returns
  finally:
    env.close()


def _converter(policy: LoadedPolicy, env, env_id: str
               ) -> ObservationConverter:
  """The env's observation converter, checked to give the policy's keys."""
  try:
    convert = ObservationConverter(env.observation_space, env_id)
  except UnsupportedObservation as e:
    raise EvaluationError(str(e)) from None
  describe = lambda specs: ', '.join(
      f'{o.key} {o.dtype} {list(o.shape)}' for o in specs)
  if tuple(convert.specs) != tuple(policy.observations):
    raise EvaluationError(
        f'The policy from {policy.source} takes observations '
        f'{describe(policy.observations)}, but {env_id} gives '
        f'{describe(convert.specs)}.')
  return convert


def _render(env, env_id: str) -> np.ndarray:
  try:
    return np.asarray(env.render(), np.uint8)
  except gym.error.DependencyNotInstalled as e:
    raise EvaluationError(
        f'Rendering {env_id} needs pygame, which is not installed ({e}). '
        "Install the video extra: pip install -e '.[video]' (or pip install "
        'pygame), or run without --video.') from None


class VideoWriter:
  """Appends frames to a GIF or MP4 (by the file suffix) with imageio.

  The file is opened at the first frame, so a failed evaluation leaves any
  earlier video in place. Frames are shrunk by an integer factor so the
  longer side is at most `max_side` pixels (GIFs of full-size frames grow
  large quickly).
  """

  def __init__(self, path: str, fps: int = 30, max_side: int = 320):
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in ('.gif', '.mp4'):
      raise EvaluationError(
          f'Video path {path!r} must end in .gif or .mp4.')
    try:
      import imageio.v2 as imageio
      from PIL import Image  # installed with imageio
      if suffix == '.mp4':
        import imageio_ffmpeg  # noqa: F401  (imageio's MP4 backend)
    except ImportError as e:
      raise EvaluationError(
          f'Cannot write {path!r}: {e.name} is not installed. pip install '
          f"-e '.[video]' for GIFs; MP4 also needs imageio-ffmpeg.") from None
    self._open = lambda: imageio.get_writer(
        path, **({'duration': 1000 / fps, 'loop': 0} if suffix == '.gif'
                 else {'fps': fps, 'macro_block_size': 1}))
    self._image = Image
    self._writer = None
    self.path = path
    self.max_side = max_side
    self.frames = 0

  def add(self, frame: np.ndarray) -> None:
    if self._writer is None:
      os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
      self._writer = self._open()
    factor = -(-max(frame.shape[:2]) // self.max_side)
    if factor > 1:  # box-filter averaging keeps thin lines visible
      frame = np.asarray(self._image.fromarray(frame).reduce(factor))
    self._writer.append_data(frame)
    self.frames += 1

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()


def summarize(returns: np.ndarray) -> str:
  """'N episodes: return mean M, std S (min, max)'."""
  return (f'{len(returns)} episodes: return mean {returns.mean():.2f}, '
          f'std {returns.std():.2f} (min {returns.min():.2f}, max '
          f'{returns.max():.2f})')

