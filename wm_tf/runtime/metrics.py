"""Averaging scalar metrics between writes to TensorBoard."""

from __future__ import annotations

import collections
from typing import Dict, Mapping

import numpy as np
import tensorflow as tf


class ScalarAverager:
  """Accumulates {name: scalar} dicts; `flush()` returns the means."""

  def __init__(self):
    self._sums = collections.defaultdict(float)
    self._counts = collections.defaultdict(int)

  def add(self, metrics: Mapping[str, object]) -> None:
    for name, value in metrics.items():
      self._sums[name] += float(np.asarray(value))
      self._counts[name] += 1

  def flush(self) -> Dict[str, float]:
    means = {k: self._sums[k] / self._counts[k] for k in self._sums}
    self._sums.clear()
    self._counts.clear()
    return means


def write_scalars(writer, scalars: Mapping[str, float], step: int) -> None:
  """Writes scalars to a tf.summary writer at `step` (env steps)."""
  with writer.as_default(step=step):
    for name, value in scalars.items():
      tf.summary.scalar(name, value)
  writer.flush()


def write_histograms(writer, values: Mapping[str, np.ndarray],
                     step: int) -> None:
  """Writes histograms of arrays (any shape, flattened) at `step`."""
  with writer.as_default(step=step):
    for name, value in values.items():
      value = np.asarray(value)
      if value.size:
        tf.summary.histogram(name, value.reshape(-1))
  writer.flush()
