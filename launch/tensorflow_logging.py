"""TensorFlow's C++ log, hidden from the launchers unless asked for.

`quiet_unless_asked()` runs before any launcher module (from
`launch/__init__.py`, and `benchmarks/__init__.py`). It decides once:

  * TF_CPP_MIN_LOG_LEVEL set in the environment: that level applies (the
    user's setting wins), also to the lines TensorFlow prints while its
    libraries load, which ignore the variable (see below).
  * else `--verbosity=N` (or `-v N`) with N >= 1 on the command line:
    nothing changes, TensorFlow logs as it always does.
  * else quiet: TF_CPP_MIN_LOG_LEVEL=3, which hides every C++ record but
    FATAL once TensorFlow runs (cuInit failures at device initialisation,
    oneDNN notices of kernels, gRPC server start-up), and the load-time
    lines are dropped too.

Load-time lines: loading TensorFlow's shared libraries prints, before
absl::InitializeLog() and before TF_CPP_MIN_LOG_LEVEL is read, 'WARNING:
All log messages before absl::InitializeLog() ...' and INFO records
(oneDNN custom operations, no CUDA driver), once per library. They are
written to file descriptor 2 by C++ code, so the first `import tensorflow`
runs with that descriptor pointed at a temporary file; afterwards every
line that is not such a record below the level is written back to stderr
(Python warnings, tracebacks, FATAL records). The import is caught by a
`sys.meta_path` finder, so `--help` and flag errors still return before
TensorFlow is imported. oneDNN stays as it is: TF_ENABLE_ONEDNN_OPTS
selects kernels (numerics), not messages.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile
from typing import Mapping, Optional, Sequence

LEVEL_VARIABLE = 'TF_CPP_MIN_LOG_LEVEL'
QUIET_LEVEL = 3  # FATAL only
# absl --verbosity from which TensorFlow's C++ log is left alone (DEBUG).
VERBOSE_FROM = 1

# An absl/TF C++ record: severity letter, MMDD, time, thread, file:line].
_RECORD = re.compile(r'^([IWEF])\d{4} \d\d:\d\d:\d+\.\d+ +\d+ +[^ \]]+\] ')
_PREAMBLE = 'WARNING: All log messages before absl::InitializeLog()'
_SEVERITY = {'I': 0, 'W': 1, 'E': 2, 'F': 3}


def verbosity_from_argv(argv: Sequence[str]) -> Optional[int]:
  """The last --verbosity / -v value in `argv` (absl spellings), or None.

  Arguments after a bare '--' are not flags; a value that is not an
  integer is left for absl to reject.
  """
  value = None
  args = list(argv[1:])
  for i, arg in enumerate(args):
    if arg == '--':
      break
    name, eq, text = arg.lstrip('-').partition('=')
    if not arg.startswith('-') or name not in ('verbosity', 'v'):
      continue
    if not eq:
      text = args[i + 1] if i + 1 < len(args) else ''
    try:
      value = int(text, 0)
    except ValueError:
      pass
  return value


def hidden_level(argv: Sequence[str],
                 environ: Mapping[str, str]) -> Optional[int]:
  """The C++ level below which load-time lines are dropped, or None.

  None: leave TensorFlow's output alone (--verbosity >= VERBOSE_FROM, or a
  TF_CPP_MIN_LOG_LEVEL of 0 or one that is not an integer).
  """
  if LEVEL_VARIABLE in environ:
    try:
      level = int(environ[LEVEL_VARIABLE])
    except ValueError:
      return None
    return level if level > 0 else None
  verbosity = verbosity_from_argv(argv)
  if verbosity is not None and verbosity >= VERBOSE_FROM:
    return None
  return QUIET_LEVEL


def is_hidden(line: str, level: int) -> bool:
  """Whether a load-time stderr line is a C++ record below `level`."""
  if line.startswith(_PREAMBLE):
    return level > _SEVERITY['W']
  match = _RECORD.match(line)
  return bool(match) and _SEVERITY[match.group(1)] < level


@contextlib.contextmanager
def filtered_stderr(level: int):
  """File descriptor 2 captured; lines not `is_hidden` go back after."""
  sys.stderr.flush()
  try:
    saved = os.dup(2)
  except OSError:  # no descriptor 2: nothing would be printed anyway
    yield
    return
  with tempfile.TemporaryFile() as captured:
    os.dup2(captured.fileno(), 2)
    try:
      yield
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      captured.seek(0)
      text = captured.read().decode('utf-8', 'replace')
      kept = [line for line in text.splitlines(keepends=True)
              if not is_hidden(line, level)]
      if kept:
        sys.stderr.write(''.join(kept))
        sys.stderr.flush()


class _Loader(importlib.abc.Loader):
  """`loader`, executing the module inside `filtered_stderr(level)`."""

  def __init__(self, loader, level: int):
    self._loader = loader
    self._level = level

  def create_module(self, spec):
    return self._loader.create_module(spec)

  def exec_module(self, module):
    with filtered_stderr(self._level):
      self._loader.exec_module(module)

  def __getattr__(self, name):
    return getattr(self._loader, name)


class _TensorFlowFinder(importlib.abc.MetaPathFinder):
  """Finds 'tensorflow' once, through the other finders, with `_Loader`."""

  def __init__(self, level: int):
    self._level = level

  def find_spec(self, name, path=None, target=None):
    if name != 'tensorflow':
      return None
    sys.meta_path.remove(self)
    spec = importlib.util.find_spec(name)
    if spec is not None and spec.loader is not None:
      spec.loader = _Loader(spec.loader, self._level)
    return spec


def quiet_unless_asked(argv: Optional[Sequence[str]] = None) -> None:
  """Applies the module docstring's rules to this process (`sys.argv`).

  Must run before TensorFlow is imported; afterwards it changes nothing.
  """
  if 'tensorflow' in sys.modules:
    return
  argv = sys.argv if argv is None else argv
  level = hidden_level(argv, os.environ)
  if level is None:
    return
  os.environ.setdefault(LEVEL_VARIABLE, str(level))
  if not any(isinstance(f, _TensorFlowFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _TensorFlowFinder(level))
