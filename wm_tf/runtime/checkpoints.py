"""Checkpoints of a training run, and the checks that make resuming safe.

A run directory (`--logdir`) holds:

    config.yaml     the resolved config; a resumed run must match it.
    checkpoints/    ckpt-<train step>.{index,data-*} and TF's `checkpoint`
                    file naming the newest; the last `run.checkpoints_to_keep`.
    episodes/       finished episodes, one file each (`wm_tf.runtime.replay`).

A checkpoint holds the agent (every model, and through the learner its
three optimizers, its train-step counter and return scale), the run's other
state as named values (counters, NumPy generator states, the config text)
and any further trackables the trainer names (its `tf.random.Generator`).

Every model's variables are also saved in a dict keyed by path, so a
variable that the object graph of its Keras model does not reach (layers
kept in plain Python containers; the slow critic is in no optimizer) is
still saved and restored.

A checkpoint that cannot be read (truncated, bit-flipped, missing) is
skipped with a warning and the one before it is restored.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import re
import shutil
import tempfile
import warnings
from typing import Any, Dict, List, Mapping, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from wm_tf import config as config_lib
# Resuming starts by checking the saved config; callers reach it here.
from wm_tf.runtime.saved_config import (  # noqa: F401  (re-exported)
    ConfigMismatch, check_saved_config, config_differences)

CHECKPOINT_NAME = 'ckpt'
_CHECKPOINT_FILE = re.compile(CHECKPOINT_NAME + r'-(\d+)\.index')


class NoUsableCheckpoint(RuntimeError):
  """Checkpoints exist, but none of them can be read."""


def default_logdir(env_id: str, seed: int) -> str:
  """logdir/<env id>-seed<seed>, the id's ':' and '/' (atari:Pong,
  wm_tf/Dice-v0) made '_' so the run is one directory whose name
  TensorBoard's --logdir takes as it is."""
  return f"logdir/{env_id.replace(':', '_').replace('/', '_')}-seed{seed}"


def write_text_atomically(path: str, text: str) -> None:
  """Writes a file via a temporary file and a rename: all or nothing."""
  directory = os.path.dirname(os.path.abspath(path))
  handle, temp = tempfile.mkstemp(dir=directory, prefix='.' + os.path.basename(
      path) + '.', suffix='.tmp')
  try:
    with os.fdopen(handle, 'w') as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(temp, path)
  except BaseException:
    if os.path.exists(temp):
      os.remove(temp)
    raise


# ----------------------------------------------------------------------------
# NumPy generators as text.
# ----------------------------------------------------------------------------


def rng_state_text(rng: np.random.Generator) -> str:
  """The state of a NumPy generator as JSON (bit generator name included)."""
  return json.dumps(rng.bit_generator.state)


def set_rng_state(rng: np.random.Generator, text: str) -> None:
  """Restores a state written by `rng_state_text`."""
  rng.bit_generator.state = json.loads(text)


# ----------------------------------------------------------------------------
# The checkpoint.
# ----------------------------------------------------------------------------


# Names Keras numbers per process: 'seed_generator_12' -> 'seed_generator'.
_AUTOMATIC_NUMBER = re.compile(r'\b(seed_generator)_\d+\b')


def _model_variables(roots: Mapping[str, Any]) -> Dict[str, tf.Variable]:
  """Every variable of every Keras model reachable from `roots`, by path.

  Walks the object graph breadth-first from the named roots; each Keras
  layer met contributes its variables (Keras' own list, which also holds
  those its object graph misses) not already taken, under the key
  '<object path>.<variable path>' with '/' written as '.'. Parents come
  before the layers nested in them, so keys name the outermost model.

  Keras numbers the unnamed objects it makes per process (a GRU cell's
  'seed_generator_7'): that number is dropped from the key, so a run
  restores in a process that built other agents first. Keys that then
  coincide get '#1', '#2', ... in the (deterministic) walk order.
  """
  out: Dict[str, tf.Variable] = {}
  taken = set()
  seen = set()
  queue = list(roots.items())
  while queue:
    path, obj = queue.pop(0)
    if id(obj) in seen:
      continue
    seen.add(id(obj))
    if isinstance(obj, keras.layers.Layer):
      for variable in obj.variables:
        if id(variable) not in taken:
          taken.add(id(variable))
          key = _AUTOMATIC_NUMBER.sub(
              r'\1', f'{path}.{variable.path}'.replace('/', '.'))
          duplicate = 0
          while (key + (f'#{duplicate}' if duplicate else '')) in out:
            duplicate += 1
          out[key + (f'#{duplicate}' if duplicate else '')] = variable
    for name, child in tf.train.TrackableView(obj).children(obj).items():
      queue.append((f'{path}.{name}', child))
  return out


def _value_variable(name: str, value: Any) -> tf.Variable:
  if isinstance(value, bool) or not isinstance(value, (int, float, str)):
    raise TypeError(f'Checkpoint value {name!r} must be an int, float or '
                    f'str, got {value!r}.')
  dtype = {int: tf.int64, float: tf.float64, str: tf.string}[type(value)]
  return tf.Variable(value, dtype=dtype, trainable=False, name=name)


def _read_value(variable: tf.Variable) -> Any:
  value = variable.numpy()
  if variable.dtype == tf.string:
    return value.decode()
  return int(value) if variable.dtype.is_integer else float(value)


@dataclasses.dataclass
class Restored:
  """What `RunCheckpoint.restore_newest` found."""
  path: str  # the checkpoint restored (absolute prefix)
  number: int  # its number (the train step it was saved at)
  values: Dict[str, Any]  # the named values, as Python ints, floats, str
  skipped: List[str]  # newer checkpoints that could not be used


def checkpoint_number(path: str) -> int:
  """The number N of a checkpoint prefix '.../ckpt-N'."""
  return int(path.rsplit('-', 1)[1])


def list_checkpoints(directory: str) -> List[str]:
  """Absolute prefixes of the checkpoints in `directory`, newest first.

  The directory's own listing is the truth: every `ckpt-N.index` is a
  candidate, whether or not TF's `checkpoint` state file names it (the
  state file can lag behind a kill, or name paths relative to another
  working directory). Files set aside as `corrupt-*` are not listed.
  """
  directory = os.path.abspath(directory)
  if not os.path.isdir(directory):
    return []
  prefixes = [os.path.join(directory, name[:-len('.index')])
              for name in os.listdir(directory)
              if _CHECKPOINT_FILE.fullmatch(name)]
  return sorted(prefixes, key=checkpoint_number, reverse=True)


# What reading a damaged checkpoint raises: TF's own errors, and the
# IndexError / ValueError its Python reader raises on a short file.
_READ_ERRORS = (tf.errors.OpError, IndexError, ValueError, OSError,
                RuntimeError)


def damage_in(prefix: str) -> Optional[str]:
  """Why the files of checkpoint `prefix` cannot be read, or None.

  Reads the index and every tensor, so a truncated, bit-flipped or missing
  file is found here (each tensor's checksum is verified on read) before a
  restore could blame the model.
  """
  shards = glob.glob(glob.escape(prefix) + '.data-*')
  if not shards:
    return 'its .data file is missing'
  try:
    reader = tf.train.load_checkpoint(prefix)
    for key in reader.get_variable_to_shape_map():
      reader.get_tensor(key)
  except _READ_ERRORS as e:
    message = ' '.join(str(e).split())[:200]
    return f'its files are damaged (truncated or corrupted: {message})'
  return None


class RunCheckpoint:
  """Saves and restores everything a resumed run needs, newest first.

  Args:
    directory: where checkpoints go (logdir/checkpoints); relative paths
      are taken from the current working directory once, here.
    agent: a `wm_tf.agent.builder.Agent`.
    values: {name: initial value} of plain run state (int, float or str),
      kept in variables; `save` stores current values, `restore_newest`
      returns the restored ones.
    trackables: further objects to save, e.g. {'seeds': tf.random.Generator}.
    max_to_keep: newest checkpoints kept on disk.

  Example:
    checkpoints = RunCheckpoint(logdir + '/checkpoints', agent,
                                values={'env_steps': 0})
    restored = checkpoints.restore_newest()  # None in a new directory
    checkpoints.save(100, {'env_steps': 2000})
  """

  def __init__(self, directory: str, agent, values: Mapping[str, Any] = (),
               trackables: Mapping[str, Any] = (), max_to_keep: int = 3):
    self.directory = os.path.abspath(directory)
    self._values = {name: _value_variable(name, value)
                    for name, value in dict(values).items()}
    agent_objects = agent_checkpoint_objects(agent)
    self.checkpoint = tf.train.Checkpoint(
        **agent_objects, model_variables=_model_variables(agent_objects),
        values=self._values, **dict(trackables))
    # Created now, so that every checkpoint holds it: a restore makes it
    # and would otherwise find it unmatched.
    self.checkpoint.save_counter  # pylint: disable=pointless-statement
    self.max_to_keep = max_to_keep
    self._state_file = os.path.join(self.directory, 'checkpoint')

  @property
  def latest(self) -> Optional[str]:
    """The newest checkpoint prefix on disk (not checked), or None."""
    found = self.candidates()
    return found[0] if found else None

  def candidates(self) -> List[str]:
    """Checkpoint prefixes on disk, newest first (`list_checkpoints`)."""
    return list_checkpoints(self.directory)

  def save(self, checkpoint_number: int,
           values: Optional[Mapping[str, Any]] = None) -> str:
    """Writes checkpoint `ckpt-<checkpoint_number>` and drops old ones.

    TensorFlow writes the data file and then the index, so a process
    killed while saving leaves no index (not a candidate) or a damaged
    pair that `restore_newest` skips. The state file is rewritten after
    the save for tools that read it (`tf.train.latest_checkpoint`).

    Args:
      checkpoint_number: the train step.
      values: current values of some or all of the named values.

    Returns:
      The checkpoint prefix written.
    """
    for name, value in dict(values or {}).items():
      self._values[name].assign(value)
    os.makedirs(self.directory, exist_ok=True)
    prefix = self.checkpoint.write(os.path.join(
        self.directory, f'{CHECKPOINT_NAME}-{int(checkpoint_number)}'))
    kept = self.candidates()
    for old in kept[self.max_to_keep:]:
      for name in glob.glob(glob.escape(old) + '.*'):
        os.remove(name)
    self._write_state(kept[:self.max_to_keep])
    return prefix

  def _write_state(self, prefixes: Sequence[str]) -> None:
    """TF's state file naming `prefixes` (newest first), relative paths."""
    if not prefixes:
      if os.path.exists(self._state_file):
        os.remove(self._state_file)
      return
    names = [os.path.basename(p) for p in reversed(prefixes)]
    write_text_atomically(self._state_file, ''.join(
        [f'model_checkpoint_path: "{names[-1]}"\n'] +
        [f'all_model_checkpoint_paths: "{name}"\n' for name in names]))

  def remove_interrupted_saves(self) -> List[str]:
    """Deletes what a save killed midway left: TF's `ckpt-N_temp` folders
    and a state file's temporary copy. Returns the paths removed."""
    if not os.path.isdir(self.directory):
      return []
    removed = []
    for name in os.listdir(self.directory):
      path = os.path.join(self.directory, name)
      if name.startswith(CHECKPOINT_NAME + '-') and '_temp' in name:
        if os.path.isdir(path):
          shutil.rmtree(path, ignore_errors=True)
        else:
          os.remove(path)
        removed.append(path)
      elif name.startswith('.checkpoint.') and name.endswith('.tmp'):
        os.remove(path)
        removed.append(path)
    return removed

  def restore_newest(self) -> Optional[Restored]:
    """Restores the newest readable checkpoint, falling back over damage.

    Every candidate on disk is tried, newest first; one whose files are
    damaged or that does not fit the agent is skipped with a warning that
    names its cause and the checkpoint tried next.

    Returns:
      What was restored, or None if the directory holds no checkpoint.

    Raises:
      NoUsableCheckpoint: checkpoints exist but none can be read; the
        message names each one and its cause.
    """
    candidates = self.candidates()
    skipped: List[str] = []
    causes: Dict[str, str] = {}
    for i, path in enumerate(candidates):
      cause = damage_in(path)
      if cause is None:
        try:
          status = self.checkpoint.restore(path)
          status.expect_partial()
          status.assert_existing_objects_matched()
        except (AssertionError,) + _READ_ERRORS as e:
          message = ' '.join(str(e).split())[:300]
          cause = ('it does not fit the agent that config.yaml builds '
                   f'({type(e).__name__}: {message})')
      if cause is None:
        values = {name: _read_value(v) for name, v in self._values.items()}
        return Restored(path, checkpoint_number(path), values, skipped)
      skipped.append(path)
      causes[path] = cause
      later = (f'falling back to {os.path.basename(candidates[i + 1])}'
               if i + 1 < len(candidates) else
               'no older checkpoint is left to fall back to')
      warnings.warn(f'Checkpoint {path} cannot be used: {cause}; {later}.',
                    RuntimeWarning, stacklevel=2)
    if skipped:
      listed = '; '.join(f'{os.path.basename(p)}: {causes[p]}'
                         for p in skipped)
      raise NoUsableCheckpoint(
          f'None of the {len(skipped)} checkpoint(s) in {self.directory} '
          f'can be used ({listed}). Move the directory aside to start '
          'over, or use a new --logdir.')
    return None

  def discard(self, paths: Sequence[str]) -> None:
    """Moves unusable checkpoints aside and rewrites the state file.

    Their files are renamed `corrupt-ckpt-N.*` (kept for inspection; never
    listed or deleted), so the next save of the same train step starts
    clean.
    """
    for path in paths:
      for name in glob.glob(glob.escape(path) + '.*'):
        os.replace(name, os.path.join(os.path.dirname(name),
                                      'corrupt-' + os.path.basename(name)))
    self._write_state(self.candidates()[:self.max_to_keep])


def agent_checkpoint_objects(agent) -> Dict[str, Any]:
  """The agent's objects under the names every checkpoint uses."""
  return dict(world_model=agent.world_model, actor=agent.actor,
              critic=agent.critic, slow_critic=agent.slow_critic,
              learner=agent.learner)


class RunDirectoryError(ValueError):
  """A run directory whose agent cannot be rebuilt and restored."""


@dataclasses.dataclass
class RestoredAgent:
  """A run's agent rebuilt from its config.yaml, with its newest readable
  checkpoint restored (`restore_agent`)."""
  logdir: str  # absolute
  config: config_lib.Config
  spec: Any  # the environment's EnvSpec
  agent: Any  # wm_tf.agent.builder.Agent
  restored: Restored


def restore_agent(logdir: str) -> RestoredAgent:
  """Rebuilds the agent of a run directory and restores it, as a resumed
  run would: newest checkpoint first, falling back over damaged ones.

  The one restore path of evaluation and export (`wm_tf.runtime.evaluation`,
  `wm_tf.runtime.export`); the trainer uses `RunCheckpoint` with its run
  state too. `logdir` may be relative to the working directory.

  Raises:
    RunDirectoryError: no such directory, no config.yaml, a config or
      environment that cannot be rebuilt, no checkpoint, or none usable;
      the message says which.
  """
  # Imported here: the agent and environments sit above checkpoint I/O.
  from wm_tf.agent.builder import build_agent
  from wm_tf.runtime.environments import UnsupportedEnvironment, inspect_env
  path = os.path.abspath(logdir)
  if not os.path.isdir(path):
    raise RunDirectoryError(f'Run directory {logdir!r} does not exist.')
  config_path = os.path.join(path, 'config.yaml')
  if not os.path.isfile(config_path):
    raise RunDirectoryError(
        f'{logdir!r} has no config.yaml; is it a run directory written by '
        'launch.train?')
  try:
    config = config_lib.load_config(config_path)
    spec = inspect_env(config.env.id, config.env.max_episode_steps,
                       options=config.env)
  except (config_lib.ConfigError, UnsupportedEnvironment) as e:
    raise RunDirectoryError(
        f'Cannot rebuild the agent of {logdir!r}: {e}') from None
  agent = build_agent(config, spec)
  checkpoints = RunCheckpoint(os.path.join(path, 'checkpoints'), agent)
  try:
    restored = checkpoints.restore_newest()
  except NoUsableCheckpoint as e:
    raise RunDirectoryError(str(e)) from None
  if restored is None:
    raise RunDirectoryError(
        f'{logdir!r} has no checkpoint yet; the trainer writes one every '
        'run.checkpoint_seconds and run.checkpoint_every train steps, and '
        'at the end of the run.')
  return RestoredAgent(path, config, spec, agent, restored)
