"""Observation encoder: vector observations -> features."""

from __future__ import annotations

import keras
import tensorflow as tf

from wm_tf.components.mlp import MLP


class VectorEncoder(keras.Model):
  """MLP over flat observations.

  Input: observations [..., O] float32. Output: features [..., units],
  float32 whatever the dtype policy the MLP computes in (`dtype=`).
  """

  def __init__(self, units: int = 256, layers: int = 2,
               activation: str = 'silu', **kwargs):
    super().__init__(**kwargs)
    self.mlp = MLP(units, layers, activation, name='mlp',
                   dtype=self.dtype_policy)
    self.output_dim = units

  def call(self, observation):
    return tf.cast(self.mlp(observation), tf.float32)

  def get_config(self):
    return {**super().get_config(), **self.mlp.arguments()}
