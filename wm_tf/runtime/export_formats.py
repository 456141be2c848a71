"""The formats `launch.export` writes, and where each goes in its output.

An export of version N into a model base directory DIR writes, per format:

  saved_model   DIR/N/        TF Serving's layout (`wm_tf.runtime.export`);
  onnx          DIR/N.onnx    the deterministic policy, ONNX built-in ops;
  tflite        DIR/N.tflite  the same, TFLite built-in ops.

TF Serving takes integer-named directories as versions and skips the
files beside them; a version number counts as taken when any of the three
exists. This module imports nothing heavy, so that a launcher can check
its flags before TensorFlow loads.
"""

from __future__ import annotations

import os
from typing import Sequence, Tuple

FORMATS = ('saved_model', 'onnx', 'tflite')
DEFAULT_FORMATS = ('saved_model',)
# The single-file formats: their file name is the version plus this suffix.
SUFFIXES = {'onnx': '.onnx', 'tflite': '.tflite'}


def check_formats(formats: Sequence[str]) -> Tuple[str, ...]:
  """The formats, deduplicated in their given order.

  Raises:
    ValueError: a name is not one of FORMATS, or no format is given.
  """
  names = tuple(dict.fromkeys(name.strip() for name in formats))
  for name in names:
    if name not in FORMATS:
      raise ValueError(f'Unknown export format {name!r}; allowed: '
                       f'{", ".join(FORMATS)} (comma-separated).')
  if not names:
    raise ValueError(
        f'No export format given; allowed: {", ".join(FORMATS)}.')
  return names


def format_path(output: str, version: int, format_: str) -> str:
  """Where `format_` of `version` goes in `output` (see the module doc)."""
  if format_ == 'saved_model':
    return os.path.join(output, str(version))
  return os.path.join(output, f'{version}{SUFFIXES[format_]}')


def taken_versions(output: str) -> Tuple[int, ...]:
  """The versions in `output`: integer-named directories and N.onnx /
  N.tflite files, sorted."""
  if not os.path.isdir(output):
    return ()
  versions = set()
  for name in os.listdir(output):
    path = os.path.join(output, name)
    if name.isdigit() and os.path.isdir(path):
      versions.add(int(name))
    for suffix in SUFFIXES.values():
      stem = name[:-len(suffix)]
      if name.endswith(suffix) and stem.isdigit() and os.path.isfile(path):
        versions.add(int(stem))
  return tuple(sorted(versions))
