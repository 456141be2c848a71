"""Representation learners: encoder features -> latent state distribution.

Every learner is a Keras model with
  call(features [..., F]) -> distribution over latent states [..., D]
  auxiliary_loss(features, latent) -> (scalar loss, {name: scalar metric})
    for the terms it adds to the world-model loss (zero for plain MLP).
and the attribute `latent_dim` (D).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from wm_tf import distributions
from wm_tf.components.mlp import MLP
from wm_tf.registry import Registry

REPRESENTATIONS = Registry('representation_learner')


@REPRESENTATIONS.register('mlp')
class MLPBottleneck(keras.Model):
  """Deterministic MLP bottleneck: features -> tanh(Dense(latent_dim)).

  The tanh keeps the latent in [-1, 1], so the scale of the dynamics loss
  does not drift as the encoder learns.
  """

  def __init__(self, latent_dim: int = 64, units: int = 256, layers: int = 1,
               activation: str = 'silu', **kwargs):
    super().__init__(**kwargs)
    self.latent_dim = latent_dim
    self.mlp = MLP(units, layers, activation, name='mlp')
    self.out = keras.layers.Dense(latent_dim, activation='tanh', name='latent')

  def call(self, features):
    return distributions.deterministic(self.out(self.mlp(features)))

  def auxiliary_loss(self, features, latent):
    del features, latent
    return tf.constant(0.0), {}
