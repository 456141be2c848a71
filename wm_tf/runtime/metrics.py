"""Scalar averages, scalars and histograms for TensorBoard."""

from __future__ import annotations

import collections
from typing import Dict, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf


# Metrics a batch may lack (NaN then, e.g. no terminal step in it): their
# means are over the values that are not NaN. Every other metric's mean
# keeps a NaN, which must show.
SPARSE_METRICS = ('world_model/continue_at_terminal',)


class ScalarAverager:
  """Accumulates {name: scalar} dicts; `flush()` returns the means
  (a name of SPARSE_METRICS skips its NaNs; NaN if it had only those)."""

  def __init__(self):
    self._sums = collections.defaultdict(float)
    self._counts = collections.defaultdict(int)

  def add(self, metrics: Mapping[str, object]) -> None:
    for name, value in metrics.items():
      value = float(np.asarray(value))
      if name in SPARSE_METRICS and np.isnan(value):
        self._sums[name] += 0.0  # the name is reported, as NaN if no value
        continue
      self._sums[name] += value
      self._counts[name] += 1

  def flush(self) -> Dict[str, float]:
    means = {k: self._sums[k] / self._counts[k] if self._counts[k]
             else float('nan') for k in self._sums}
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


def run_histograms(world_model, spec, batch: Optional[Mapping[str, np.ndarray]],
                   actions: Sequence[np.ndarray]) -> Dict[str, np.ndarray]:
  """Histogram values of the latents of `batch` and of the env actions.

  Args:
    world_model: its `latent_states` gives the latents [B, T, D] of a
      replayed batch, carrying a recurrent representation's history along
      each sequence.
    spec: the environment's `EnvSpec`.
    batch: the last sampled batch (observation, action, is_first
      [B, T, ...]), or None.
    actions: arrays [N_i, A] of the agent's actions since the last write.

  Returns:
    {'latent/state', 'train/action' (the index for discrete actions, else
    [N, A]) and, for continuous actions, 'train/action_<i>' for the first
    8 dimensions}, each present only when there is data for it.
  """
  values = {}
  if batch is not None:
    latent = world_model.latent_states(
        {k: tf.convert_to_tensor(batch[k])
         for k in spec.observation_keys + ('action', 'is_first')})
    values['latent/state'] = latent.numpy()
  if actions:
    actions = np.concatenate(actions)
    if spec.discrete:  # the index of the one-hot action
      values['train/action'] = np.argmax(actions, -1)
    else:
      values['train/action'] = actions
      for i in range(min(spec.action_dim, 8)):
        values[f'train/action_{i}'] = actions[:, i]
  return values
