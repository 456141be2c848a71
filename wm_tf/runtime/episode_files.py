"""Episode files of the replay: names, atomic writes and checked reads.

An episode (or the part of one saved while it was open) is one file
``ep-<index>-s<stream>-len<length>.npz`` holding an array [length, ...]
per step key (see `wm_tf.runtime.replay` for the step format).
"""

from __future__ import annotations

import os
import re
import tempfile
import zipfile
import zlib
from typing import Dict, List, Mapping, Tuple

import numpy as np

_EPISODE_FILE = re.compile(r"ep-(\d+)-s(\d+)-len(\d+)\.npz")

# What a damaged or truncated .npz can raise while being read.
READ_ERRORS = (
    OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error)


def episode_filename(index: int, stream: int, length: int) -> str:
  """File name of a stored episode, e.g. ``ep-000012-s0-len37.npz``."""
  return f"ep-{index:06d}-s{stream}-len{length}.npz"


def list_episode_files(directory) -> List[Tuple[int, int, int, str]]:
  """Episode files in ``directory``, sorted by episode index.

  Temporary files from interrupted writes do not match the name pattern and
  are left out.

  Returns:
    list of (index, stream, length, path) tuples.
  """
  found = []
  for name in os.listdir(directory):
    match = _EPISODE_FILE.fullmatch(name)
    if match:
      index, stream, length = (int(group) for group in match.groups())
      found.append((index, stream, length, os.path.join(directory, name)))
  found.sort()
  return found


def index_after_files(directory) -> int:
  """Episode index following the highest one stored in ``directory``."""
  files = list_episode_files(directory)
  return files[-1][0] + 1 if files else 0


def check_step_value(key: str, value: np.ndarray, shape: tuple,
                     dtype) -> np.ndarray:
  """`value` as `dtype` after checking its shape and dtype kind.

  Raises ValueError naming `key` when the shape differs from `shape` or
  the dtype cannot be cast within its kind (e.g. float to int).
  """
  if value.shape != shape:
    raise ValueError(
        f"key '{key}': expected shape {shape}, got {value.shape}")
  if not np.can_cast(value.dtype, dtype, casting="same_kind"):
    raise ValueError(
        f"key '{key}': cannot store dtype {value.dtype} as {dtype}")
  return value.astype(dtype, copy=False)


def write_episode(directory: str, name: str,
                  episode: Mapping[str, np.ndarray]) -> None:
  """Writes `episode` ({key: [length, ...]}) as `directory`/`name`.

  Atomically: temp file, fsync, then rename, so a reader sees either no
  file or the complete one, even if the process dies mid-write.
  """
  # The leading dot and .tmp suffix keep it out of list_episode_files.
  handle, temp_path = tempfile.mkstemp(
      dir=directory, prefix=f".{name}.", suffix=".tmp")
  try:
    with os.fdopen(handle, "wb") as file:
      np.savez_compressed(file, **episode)
      file.flush()
      os.fsync(file.fileno())
    os.replace(temp_path, os.path.join(directory, name))
  except BaseException:
    if os.path.exists(temp_path):
      os.remove(temp_path)
    raise
  _fsync_directory(directory)


def read_episode(path: str, length: int,
                 spec: Mapping[str, tuple]) -> Dict[str, np.ndarray]:
  """Reads one episode file into arrays [length, *shape] per spec key.

  Args:
    path: the file.
    length: its number of steps (from its name).
    spec: {key: (shape, dtype)}, the replay's step spec.

  Raises:
    One of READ_ERRORS for a damaged file, a missing key or a wrong shape.
  """
  if length < 1:
    raise ValueError("empty episode")
  episode = {}
  # Opening the file here closes it even when np.load rejects it.
  with open(path, "rb") as file, np.load(file, allow_pickle=False) as data:
    for key, (shape, dtype) in spec.items():
      if key not in data.files:
        raise KeyError(f"missing key '{key}'")
      episode[key] = check_step_value(key, data[key], (length,) + shape,
                                      dtype)
  return episode


def _fsync_directory(directory: str) -> None:
  """Makes a rename durable; not every platform can open a directory."""
  try:
    handle = os.open(directory, os.O_RDONLY)
  except OSError:
    return
  try:
    os.fsync(handle)
  except OSError:
    pass
  finally:
    os.close(handle)
