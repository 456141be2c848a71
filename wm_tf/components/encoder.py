"""Observation encoder: vector observations -> features."""

from __future__ import annotations

import keras

from wm_tf.components.mlp import MLP


class VectorEncoder(keras.Model):
  """MLP over flat observations.

  Input: observations [..., O] float32. Output: features [..., units].
  """

  def __init__(self, units: int = 256, layers: int = 2,
               activation: str = 'silu', **kwargs):
    super().__init__(**kwargs)
    self.mlp = MLP(units, layers, activation, name='mlp')
    self.output_dim = units

  def call(self, observation):
    return self.mlp(observation)
