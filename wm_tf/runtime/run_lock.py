"""One training process per run directory.

Two trainers on one `--logdir` (the same command started twice, or two
workers given one directory) would write interleaved episodes and
checkpoints that neither run's counters describe. The trainer holds an
exclusive lock on `logdir/.lock` for as long as its process lives; the
operating system releases it when the process ends, however it ends
(SIGKILL included), so a killed run never leaves a stale lock.

The lock is a POSIX record lock (`fcntl.lockf`): it excludes other
processes, not other trainers of the same process (tests build several).
"""

from __future__ import annotations

import fcntl
import os
from typing import IO

LOCK_FILE = '.lock'


class RunDirectoryInUse(RuntimeError):
  """Another process is training in the run directory."""


def lock_run_directory(logdir: str) -> IO[str]:
  """Takes the run directory's lock; returns the open lock file (keep it).

  Raises:
    RunDirectoryInUse: another process holds it; the message names its pid.
  """
  os.makedirs(logdir, exist_ok=True)
  handle = open(os.path.join(logdir, LOCK_FILE), 'a+')
  try:
    fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError:
    handle.seek(0)
    owner = handle.read().strip() or 'pid unknown'
    handle.close()
    raise RunDirectoryInUse(
        f'{logdir} is in use by another training process ({owner}); wait '
        'for it to end, or train in another --logdir.') from None
  handle.truncate(0)
  handle.write(f'pid {os.getpid()}\n')
  handle.flush()
  return handle
