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
import tempfile
import warnings
from typing import Any, Dict, List, Mapping, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf
import yaml

from wm_tf import config as config_lib

CHECKPOINT_NAME = 'ckpt'
_CHECKPOINT_FILE = re.compile(CHECKPOINT_NAME + r'-(\d+)\.index')


class ConfigMismatch(config_lib.ConfigError):
  """A resumed run's config differs from the one saved in its directory."""


class NoUsableCheckpoint(RuntimeError):
  """Checkpoints exist, but none of them can be read."""


# ----------------------------------------------------------------------------
# The config saved beside the run.
# ----------------------------------------------------------------------------


def _flatten(tree: Mapping[str, Any], prefix: str = '') -> Dict[str, Any]:
  flat = {}
  for key, value in tree.items():
    path = f'{prefix}{key}'
    if isinstance(value, dict):
      flat.update(_flatten(value, path + '.'))
    else:
      flat[path] = value
  return flat


def config_differences(saved: Mapping[str, Any], current: Mapping[str, Any]
                       ) -> List[str]:
  """Dotted keys whose values differ between two config dicts (YAML names).

  Returns lines 'key: saved -> current', sorted by key; a key missing on
  one side shows as '(absent)'.
  """
  old, new = _flatten(saved), _flatten(current)
  missing = '(absent)'
  return [f'{key}: {old.get(key, missing)!r} -> {new.get(key, missing)!r}'
          for key in sorted(set(old) | set(new))
          if old.get(key, missing) != new.get(key, missing)]


def check_saved_config(logdir: str, config: config_lib.Config,
                       allow_change: bool = False) -> List[str]:
  """Compares `config` with `logdir/config.yaml`, if there is one.

  Returns:
    The differing keys as 'key: saved -> current' lines (empty for a new
    run directory or the same config).

  Raises:
    ConfigMismatch: they differ and `allow_change` is false; the message
      lists every differing key.
  """
  path = os.path.join(logdir, 'config.yaml')
  if not os.path.exists(path):
    return []
  with open(path) as f:
    try:
      saved = yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
      raise ConfigMismatch(
          f'{path} (the config of the run being resumed) is not valid YAML: '
          f'{e}') from None
  try:
    # Keys added to the schema since the run was saved take their defaults.
    saved = config_lib.to_dict(config_lib.from_dict(saved))
  except config_lib.ConfigError:
    pass  # compare as written: unknown or invalid keys show as differences
  differences = config_differences(saved, config_lib.to_dict(config))
  if differences and not allow_change:
    raise ConfigMismatch(
        f'{logdir} holds a run started with a different config '
        f'({len(differences)} key(s) differ, saved -> now): '
        f'{"; ".join(differences)}. Resume with the same config, choose a '
        'new --logdir, or pass --allow_config_change to continue with the '
        'new one.')
  return differences


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
  path: str  # the checkpoint restored
  number: int  # its number (the train step it was saved at)
  values: Dict[str, Any]  # the named values, as Python ints, floats, str
  skipped: List[str]  # newer checkpoints that could not be read


def checkpoint_number(path: str) -> int:
  """The number N of a checkpoint prefix '.../ckpt-N'."""
  return int(path.rsplit('-', 1)[1])


class RunCheckpoint:
  """Saves and restores everything a resumed run needs, newest first.

  Args:
    directory: where checkpoints go (logdir/checkpoints).
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
    self.directory = directory
    self._values = {name: _value_variable(name, value)
                    for name, value in dict(values).items()}
    # Same object names as `wm_tf.runtime.export.trainer_checkpoint`, so
    # export and evaluation code can restore the agent alone.
    agent_objects = dict(
        world_model=agent.world_model, actor=agent.actor,
        critic=agent.critic, slow_critic=agent.slow_critic,
        learner=agent.learner)
    self.checkpoint = tf.train.Checkpoint(
        **agent_objects, model_variables=_model_variables(agent_objects),
        values=self._values, **dict(trackables))
    self.max_to_keep = max_to_keep
    self._manager: Optional[tf.train.CheckpointManager] = None
    self._state_file = os.path.join(directory, 'checkpoint')
    self._state_unreadable = False

  @property
  def manager(self) -> tf.train.CheckpointManager:
    """TF's manager of the directory (made on first use: it reads it)."""
    if self._manager is None:
      self._manager = tf.train.CheckpointManager(
          self.checkpoint, self.directory, max_to_keep=self.max_to_keep,
          checkpoint_name=CHECKPOINT_NAME)
    return self._manager

  def save(self, checkpoint_number: int,
           values: Optional[Mapping[str, Any]] = None) -> str:
    """Writes checkpoint `ckpt-<checkpoint_number>` and drops old ones.

    TensorFlow writes the files first and then replaces the `checkpoint`
    state file, so a process killed while saving leaves the previous
    checkpoint as the newest.

    Args:
      checkpoint_number: the train step.
      values: current values of some or all of the named values.

    Returns:
      The checkpoint prefix written.
    """
    for name, value in dict(values or {}).items():
      self._values[name].assign(value)
    return self.manager.save(checkpoint_number=checkpoint_number)

  def candidates(self) -> List[str]:
    """Checkpoint prefixes on disk, newest first.

    The state file's list is trusted (it names only completed saves); if it
    is missing or unreadable, the directory is listed instead.
    """
    if not os.path.isdir(self.directory):
      return []
    try:
      # Returns None (and logs) for a file it cannot parse.
      state = tf.train.get_checkpoint_state(self.directory)
    except Exception:  # other damage; TF raises several kinds
      state = None
    if state is None and os.path.exists(self._state_file):
      self._state_unreadable = True
      warnings.warn(f'Checkpoint state file {self._state_file} is '
                    'unreadable; listing the directory instead.',
                    RuntimeWarning, stacklevel=2)
    if state is not None and state.all_model_checkpoint_paths:
      paths = [p if os.path.isabs(p) else os.path.join(self.directory, p)
               for p in state.all_model_checkpoint_paths]
    else:
      paths = [os.path.join(self.directory, name[:-len('.index')])
               for name in os.listdir(self.directory)
               if _CHECKPOINT_FILE.fullmatch(name)]
    return sorted(paths, key=checkpoint_number, reverse=True)

  def restore_newest(self) -> Optional[Restored]:
    """Restores the newest readable checkpoint.

    Returns:
      What was restored, or None if the directory holds no checkpoint.

    Raises:
      NoUsableCheckpoint: checkpoints exist but none can be read.
    """
    skipped, errors = [], []
    for path in self.candidates():
      try:
        status = self.checkpoint.restore(path)
        status.expect_partial()
        status.assert_existing_objects_matched()
      except Exception as e:  # a damaged file raises many kinds of errors
        errors.append(f'{type(e).__name__}: {str(e)[:300]}')
        warnings.warn(
            f'Checkpoint {path} cannot be read ({errors[-1]}); falling back '
            'to the one before it.', RuntimeWarning, stacklevel=2)
        skipped.append(path)
        continue
      values = {name: _read_value(v) for name, v in self._values.items()}
      return Restored(path, checkpoint_number(path), values, skipped)
    if skipped:
      raise NoUsableCheckpoint(
          f'None of the checkpoints in {self.directory} can be read '
          f'({", ".join(os.path.basename(p) for p in skipped)}); the newest '
          f'failed with {errors[0]}. Damaged files, or a model that the '
          'config now builds differently? Move the directory aside to start '
          'over, or use a new --logdir.')
    return None

  def discard(self, paths: Sequence[str]) -> None:
    """Moves unreadable checkpoints aside and rewrites the state file.

    Their files are renamed `corrupt-ckpt-N.*` (kept for inspection; the
    manager never lists or deletes them), so the next save of the same
    train step starts clean. An unreadable state file is rewritten even
    if `paths` is empty.
    """
    if not paths and not self._state_unreadable:
      return
    if self._state_unreadable:
      os.replace(self._state_file, os.path.join(self.directory,
                                                'corrupt-checkpoint'))
      self._state_unreadable = False
    for path in paths:
      for name in glob.glob(glob.escape(path) + '.*'):
        os.replace(name, os.path.join(os.path.dirname(name),
                                      'corrupt-' + os.path.basename(name)))
    keep = [p for p in self.candidates()
            if p not in paths and os.path.exists(p + '.index')]
    if keep:
      # TF's text format, oldest first, paths relative to the directory.
      names = [os.path.basename(p) for p in reversed(keep)]
      write_text_atomically(self._state_file, ''.join(
          [f'model_checkpoint_path: "{names[-1]}"\n'] +
          [f'all_model_checkpoint_paths: "{name}"\n' for name in names]))
    elif os.path.exists(self._state_file):
      os.remove(self._state_file)
    self._manager = None  # re-read on next use
