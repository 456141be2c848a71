"""Sequence replay buffer for Dreamer-style training, in NumPy only.

Each environment stream appends one step at a time to its own ring buffer.
A step is a dict of arrays following the Dreamer convention:

    <key>        [*shape]   float32  what the agent sees at this step: one
                 or uint8            entry per observation key (a vector
                                     env has the one key 'observation';
                                     images stay uint8, see `wm_tf.specs`).
    action       [act_dim]  float32  action taken AT this step, leading to
                                     the next one (zeros on a last step).
    reward       []         float32  reward received on arriving at this
                                     step (0 on a first step).
    is_first     []         bool     first step of an episode.
    is_terminal  []         bool     the environment ended the episode here
                                     (continue = 0).
    is_last      []         bool     the episode ended here, terminal or
                                     truncated.

So ``action[t]`` is chosen from ``observation[t]`` and ``reward[t + 1]`` is
what it earned::

    t            0     1     2     3 (is_last)
    observation  o0    o1    o2    o3
    action       a0    a1    a2    0
    reward       0     r1    r2    r3      r1 = reward(o0, a0)

Samples are windows of ``sequence_length`` consecutive steps of one stream.
A window may run across an episode boundary; the ``is_first`` flag inside it
marks where the new episode starts, and models reset their state there.

With ``directory`` set, every finished episode is also written to disk as
``ep-<index>-s<stream>-len<length>.npz`` so a later run can ``load`` it.
``save_open_episodes`` also writes the steps of unfinished episodes, as a
file whose last step is not ``is_last``; the rest of such an episode goes
to a later file whose first step is not ``is_first`` (a continuation), and
``load`` joins them again. So after ``save_open_episodes`` the directory
holds every step added so far, which is what lets a resumed run count its
data from disk. Only one buffer should write to a directory at a time.
"""

import os
import warnings

import numpy as np

from wm_tf.specs import vector_observation
from wm_tf.runtime.episode_files import (READ_ERRORS, check_step_value,
                                         episode_filename, index_after_files,
                                         list_episode_files, read_episode,
                                         write_episode)

__all__ = [
    "SequenceReplay",
    "default_step_spec",
    "step_spec",
    "episode_filename",
    "list_episode_files",
]

# Keys the buffer itself reads; every spec must contain them.
_REQUIRED_FLAGS = ("is_first", "is_last")

def step_spec(observations, act_dim):
  """Spec of the step record of an environment.

  Args:
    observations: the `wm_tf.specs.ObservationSpec` of every key.
    act_dim: size of the action vector.

  Returns:
    dict {key: (shape, dtype)} for ``SequenceReplay``.
  """
  spec = {o.key: (o.shape, np.dtype(o.dtype)) for o in observations}
  spec.update({
      "action": ((act_dim,), np.float32),
      "reward": ((), np.float32),
      "is_first": ((), np.bool_),
      "is_terminal": ((), np.bool_),
      "is_last": ((), np.bool_),
  })
  return spec


def default_step_spec(obs_dim, act_dim):
  """Spec of the step record of an environment with one vector key.

  Args:
    obs_dim: size of the flat observation vector.
    act_dim: size of the action vector.

  Returns:
    dict {key: (shape, dtype)} for ``SequenceReplay``.
  """
  return step_spec(vector_observation(obs_dim), act_dim)


class SequenceReplay:
  """Uniform replay over fixed-length windows of per-stream step sequences.

  Storage is one array per key of shape
  ``[num_streams, capacity_per_stream, *shape]``; stream ``s`` is a ring
  buffer over axis 1 that drops its oldest steps once full. ``sample``
  draws, with replacement, uniformly among all windows of
  ``sequence_length`` contiguous stored steps of all streams, so a stream
  holding more steps is drawn from proportionally more often.

  Example:
    replay = SequenceReplay(default_step_spec(4, 2), capacity=10_000,
                            sequence_length=64, num_streams=8)
    replay.add_batch(steps)  # every value [8, ...]
    if replay.can_sample(16):
      batch = replay.sample(16)  # batch["observation"]: [16, 64, 4]
  """

  def __init__(self, spec, capacity, sequence_length, num_streams=1,
               seed=0, directory=None, storage_directory=None):
    """Creates an empty buffer.

    Args:
      spec: dict {key: (shape tuple, numpy dtype)} of one step. Must
        contain bool scalars ``is_first`` and ``is_last``.
      capacity: total steps kept, split evenly across streams.
      sequence_length: number of consecutive steps T in a window.
      num_streams: number of independent environment streams.
      seed: seed of the buffer's own ``np.random.Generator``.
      directory: if given, finished episodes are written there as .npz
        files (the directory is created if missing).
      storage_directory: None: the ring buffers live in memory; a path:
        in memory-mapped scratch files ``<key>.npy`` there (all streams).
    """
    if num_streams < 1:
      raise ValueError(f"num_streams must be >= 1, got {num_streams}")
    if sequence_length < 1:
      raise ValueError(
          f"sequence_length must be >= 1, got {sequence_length}")
    per_stream = capacity // num_streams
    if per_stream < sequence_length:
      raise ValueError(
          f"capacity {capacity} split over {num_streams} streams gives "
          f"{per_stream} steps per stream, fewer than sequence_length "
          f"{sequence_length}; no window could ever be sampled")
    self._spec = {
        key: (tuple(int(size) for size in shape), np.dtype(dtype))
        for key, (shape, dtype) in spec.items()}
    for key in _REQUIRED_FLAGS:
      if key not in self._spec:
        raise ValueError(f"spec must contain key '{key}'")
      if self._spec[key] != ((), np.dtype(np.bool_)):
        raise ValueError(
            f"spec['{key}'] must be a bool scalar, "
            f"got {self._spec[key]}")

    self.capacity = per_stream * num_streams
    self.capacity_per_stream = per_stream
    self.sequence_length = sequence_length
    self.num_streams = num_streams
    self.directory = None if directory is None else os.fspath(directory)
    self._rng = np.random.default_rng(seed)
    self.storage_directory = storage_directory
    self._storage = {
        key: self._allocate(key, (num_streams, per_stream) + shape, dtype)
        for key, (shape, dtype) in self._spec.items()}
    # Steps ever written per stream; the next one goes to slot
    # count % capacity_per_stream.
    self._count = np.zeros(num_streams, np.int64)
    # True where a stream's newest step is not an episode end.
    self._mid_episode = np.zeros(num_streams, bool)
    self._num_episodes = 0
    # Steps of each stream's unfinished episode, kept only to save it.
    self._open_episodes = [None] * num_streams
    self._next_episode_index = 0
    if self.directory is not None:
      os.makedirs(self.directory, exist_ok=True)
      self._next_episode_index = index_after_files(self.directory)

  def _allocate(self, key, shape, dtype):
    """A zero array [num_streams, capacity_per_stream, *spec shape]."""
    if self.storage_directory is None:
      return np.zeros(shape, dtype)
    os.makedirs(self.storage_directory, exist_ok=True)
    # A new file reads as zeros; pages take memory only while in use.
    return np.lib.format.open_memmap(
        os.path.join(self.storage_directory, f"{key}.npy"), mode="w+",
        dtype=dtype, shape=shape)

  @property
  def num_steps(self):
    """Steps currently held, summed over streams (at most capacity)."""
    return int(self._stored().sum())

  @property
  def rng(self):
    """The ``np.random.Generator`` that ``sample`` draws from.

    A checkpoint can save and restore ``rng.bit_generator.state``.
    """
    return self._rng

  @property
  def num_episodes(self):
    """Finished episodes seen: ``is_last`` steps added plus loaded ones."""
    return self._num_episodes

  def can_sample(self, batch_size):
    """Whether ``sample(batch_size)`` would succeed.

    Windows are drawn with replacement, so one stored window is enough
    for any positive ``batch_size``.
    """
    return batch_size >= 1 and int(self._windows_per_stream().sum()) > 0

  def add(self, stream, step):
    """Appends one step to one stream.

    Args:
      stream: stream index in ``[0, num_streams)``.
      step: dict with exactly the spec keys; each value has the spec
        shape.

    Raises:
      ValueError: on a bad stream index, missing or extra keys, a wrong
        shape, or a dtype that cannot be cast within its kind.
    """
    if not 0 <= stream < self.num_streams:
      raise ValueError(
          f"stream must be in [0, {self.num_streams}), got {stream}")
    values = self._validate(step, leading=())
    self._write(np.array([stream]),
                {key: value[None] for key, value in values.items()})

  def add_batch(self, steps):
    """Appends one step to every stream, e.g. from a vector environment.

    Args:
      steps: dict with exactly the spec keys; each value has shape
        ``[num_streams, *spec_shape]``, row ``s`` going to stream s.
    """
    values = self._validate(steps, leading=(self.num_streams,))
    self._write(np.arange(self.num_streams), values)

  def save_open_episodes(self):
    """Writes the unsaved steps of every unfinished episode to disk.

    Each stream's steps since its episode began, or since the last call,
    go to one file; the episode's later steps go to the next. Does
    nothing without a directory.

    Returns:
      Number of steps written.
    """
    if self.directory is None:
      return 0
    written = 0
    for stream, steps in enumerate(self._open_episodes):
      if steps:
        self._save_episode(stream, steps)
        written += len(steps)
        self._open_episodes[stream] = []
    return written

  def remove_interrupted_writes(self):
    """Deletes the temporary files of episode writes killed midway.

    Returns:
      Number of files removed.
    """
    if self.directory is None:
      return 0
    removed = 0
    for name in os.listdir(self.directory):
      if name.startswith(".ep-") and name.endswith(".tmp"):
        os.remove(os.path.join(self.directory, name))
        removed += 1
    return removed

  def sample(self, batch_size):
    """Draws windows uniformly, with replacement, from all streams.

    Args:
      batch_size: number of windows B.

    Returns:
      dict {key: array [B, T, *spec_shape]} with T = sequence_length.
      Axis 1 is time: ``[b, t]`` is the step added right after
      ``[b, t - 1]`` to the same stream.

    Raises:
      ValueError: if ``batch_size`` < 1 or no stream holds
        ``sequence_length`` steps yet.
    """
    if batch_size < 1:
      raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    windows = self._windows_per_stream()
    total = int(windows.sum())
    if total == 0:
      raise ValueError(
          f"cannot sample: no stream holds sequence_length="
          f"{self.sequence_length} steps yet (stored per stream: "
          f"{self._stored().tolist()})")
  # Windows of all streams are numbered 0..total-1, stream by stream.
    flat = self._rng.integers(0, total, size=batch_size)
    ends = np.cumsum(windows)
    stream = np.searchsorted(ends, flat, side="right")
    offset = flat - (ends[stream] - windows[stream])
    first_slot = self._oldest_slot()[stream] + offset
    slots = first_slot[:, None] + np.arange(self.sequence_length)
    slots %= self.capacity_per_stream
    rows = stream[:, None]
    return {key: array[rows, slots] for key, array in self._storage.items()}

  def load(self, directory=None):
    """Appends the episodes stored in ``directory`` to the buffer.

    Files are read in index order; a continuation (first step not
    ``is_first``) is joined to the file before it from the same recorded
    stream. Each episode, in the order its last file is read (episodes
    left unfinished last), is dealt to streams round-robin (the k-th
    goes to stream ``k % num_streams``), so files
    from any number of recorded streams fit any buffer. Loaded episodes
    are not written to disk again. Temporary files are ignored; a file
    that cannot be read or does not match the spec is skipped with a
    warning naming it (a continuation left without its start is then
    loaded as an episode of its own, its first step marked
    ``is_first``). Episodes this buffer writes later continue after the
    highest index found in its own directory. ``num_episodes`` grows by
    the finished episodes read.

    Call it before adding live steps, or while every stream is at an
    episode end, so a loaded episode never lands inside a live one.

    Args:
      directory: where to read from; defaults to the buffer's own.

    Returns:
      Number of steps read and appended (the oldest may already be
      overwritten if they exceed the capacity).

    Raises:
      ValueError: if no directory is given or set.
      RuntimeError: if a stream is inside an episode.
    """
    if directory is None:
      directory = self.directory
    if directory is None:
      raise ValueError("load needs a directory: none given and none set")
    directory = os.fspath(directory)
    if self._mid_episode.any():
      raise RuntimeError(
          "load called while streams "
          f"{np.flatnonzero(self._mid_episode).tolist()} are inside an "
          "episode; load before adding steps or at episode ends")
    loaded_steps = 0
    for k, episode in enumerate(self._joined_episodes(directory)):
      self._append_block(k % self.num_streams, episode)
      loaded_steps += len(episode["is_last"])
      self._num_episodes += int(episode["is_last"][-1])
    if self.directory is not None:
      self._next_episode_index = max(
          self._next_episode_index, index_after_files(self.directory))
    return loaded_steps

  def _joined_episodes(self, directory):
    """Yields the episodes stored in ``directory``, each joined from its
    files, in the order their last files are read (unfinished ones
    last). Only the open episodes' parts are held at a time."""
    def joined(chunks):
      return {key: np.concatenate([c[key] for c in chunks])
              for key in self._spec}

    pending = {}  # recorded stream -> parts of its open episode
    for _, recorded, length, path in list_episode_files(directory):
      try:
        chunk = self._read_episode(path, length)
      except READ_ERRORS as error:
        warnings.warn(
            f"skipping unreadable episode file {path}: {error!r}",
            stacklevel=3)
        if recorded in pending:
          yield joined(pending.pop(recorded))
        continue
      if chunk["is_first"][0] or recorded not in pending:
        if recorded in pending:
          yield joined(pending.pop(recorded))
        chunk["is_first"][0] = True
        pending[recorded] = [chunk]
      else:
        pending[recorded].append(chunk)
      if chunk["is_last"][-1]:
        yield joined(pending.pop(recorded))
    for recorded in sorted(pending):
      yield joined(pending[recorded])

  def _validate(self, step, leading):
    """Checks keys, shapes and dtype kinds; returns spec-dtype arrays."""
    missing = [key for key in self._spec if key not in step]
    extra = [key for key in step if key not in self._spec]
    if missing or extra:
      raise ValueError(
          f"step keys do not match the spec: missing {missing}, "
          f"unexpected {extra}")
    values = {}
    for key, (shape, dtype) in self._spec.items():
      values[key] = check_step_value(key, np.asarray(step[key]),
                                     leading + shape, dtype)
    return values

  def _write(self, streams, values):
    """Writes one step to each of ``streams``.

    Args:
      streams: distinct stream indices, int array [N].
      values: dict {key: array [N, *spec_shape]} of the spec dtypes.
    """
    slots = self._count[streams] % self.capacity_per_stream
    for key, array in self._storage.items():
      array[streams, slots] = values[key]
    self._count[streams] += 1
    is_first = values["is_first"]
    is_last = values["is_last"]
    self._mid_episode[streams] = ~is_last
    self._num_episodes += int(is_last.sum())
    if self.directory is None:
      return
    for row, stream in enumerate(streams.tolist()):
      if is_first[row]:
          # An unfinished episode cut off by a new one is dropped.
        self._open_episodes[stream] = []
      episode = self._open_episodes[stream]
      if episode is None:
          # The start of this episode was never seen: not saved.
        continue
      episode.append(
          {key: value[row].copy() for key, value in values.items()})
      if is_last[row]:
        self._save_episode(stream, episode)
        self._open_episodes[stream] = None

  def _append_block(self, stream, values):
    """Appends consecutive steps to one stream, not saving them.

    Args:
      stream: stream index.
      values: dict {key: array [L, *spec_shape]}, L >= 1.
    """
    length = len(values["is_last"])
    keep = min(length, self.capacity_per_stream)
    positions = self._count[stream] + np.arange(length - keep, length)
    slots = positions % self.capacity_per_stream
    for key, array in self._storage.items():
      array[stream, slots] = values[key][length - keep:]
    self._count[stream] += length
    self._mid_episode[stream] = not values["is_last"][-1]

  def _save_episode(self, stream, steps):
    """Writes an episode atomically (see `episode_files.write_episode`)."""
    episode = {key: np.stack([step[key] for step in steps])
               for key in self._spec}
    name = episode_filename(self._next_episode_index, stream, len(steps))
    self._next_episode_index += 1
    write_episode(self.directory, name, episode)

  def _read_episode(self, path, length):
    """Reads one episode file into arrays [length, *spec_shape]."""
    return read_episode(path, length, self._spec)

  def _stored(self):
    """Steps held per stream, [num_streams]."""
    return np.minimum(self._count, self.capacity_per_stream)

  def _windows_per_stream(self):
    """Number of sampleable windows per stream, [num_streams]."""
    return np.maximum(self._stored() - self.sequence_length + 1, 0)

  def _oldest_slot(self):
    """Ring slot of each stream's oldest stored step, [num_streams]."""
    full = self._count > self.capacity_per_stream
    return np.where(full, self._count % self.capacity_per_stream, 0)
