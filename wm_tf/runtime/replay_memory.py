"""How much memory the replay will take, checked before training starts.

The replay holds `capacity` steps of every key of the step record
(`wm_tf.runtime.replay.step_spec`) in preallocated arrays, so its size is
known from the spaces alone: bytes per step x capacity. Images dominate:
a 64x64x3 uint8 image is 12 KiB a step, 1.2 GB for 100K steps.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np

from wm_tf.config import ConfigError


class ReplayMemoryError(ConfigError):
  """The replay would not fit in the memory available."""


def bytes_per_key(spec: Dict[str, Tuple[tuple, np.dtype]]) -> Dict[str, int]:
  """{key: bytes one step of it takes} of a replay step spec."""
  return {key: int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
          for key, (shape, dtype) in spec.items()}


def available_memory(meminfo: str = '/proc/meminfo') -> Optional[int]:
  """MemAvailable in bytes, or None where the kernel does not say."""
  try:
    with open(meminfo) as f:
      for line in f:
        if line.startswith('MemAvailable:'):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return None


def _size(n: float) -> str:
  for unit in ('B', 'KiB', 'MiB', 'GiB'):
    if n < 1024 or unit == 'GiB':
      return f'{n:.1f} {unit}' if unit != 'B' else f'{int(n)} B'
    n /= 1024
  return f'{n:.1f} GiB'


def replay_memory_line(spec, capacity: int) -> Tuple[int, str]:
  """(total bytes, a line stating them with the keys that dominate)."""
  per_key = bytes_per_key(spec)
  per_step = sum(per_key.values())
  total = per_step * int(capacity)
  top = sorted(per_key.items(), key=lambda kv: -kv[1])[:3]
  shares = ', '.join(f'{k} {100 * b / per_step:.0f}%' for k, b in top)
  return total, (f'replay memory: {_size(total)} ({per_step} bytes per step '
                 f'x replay.capacity={capacity}; {shares})')


def check_replay_memory(spec, capacity: int,
                        available: Optional[int] = None,
                        on_disk: bool = False) -> str:
  """The estimate's line, or raises ReplayMemoryError if it exceeds
  `available` bytes (default: MemAvailable; unknown: not checked). With
  `on_disk` (replay.storage 'disk') the buffers are memory-mapped files
  and only the line is returned."""
  total, line = replay_memory_line(spec, capacity)
  if on_disk:
    return line.replace('replay memory:', 'replay storage on disk:')
  if available is None:
    available = available_memory()
  if available is not None and total > available:
    per_step = sum(bytes_per_key(spec).values())
    raise ReplayMemoryError(
        f'The replay needs {line[len("replay memory: "):]}, more than the '
        f'{_size(available)} of memory available; allowed: '
        f'replay.capacity <= {available // per_step} here (or less, '
        "leaving room for the model), or replay.storage='disk'.")
  return line
