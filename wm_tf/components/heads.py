"""Prediction heads on latent states [..., D]; each returns a distribution.

The layers compute in their dtype policy's dtype (`dtype=`, e.g.
'mixed_bfloat16'); the distributions are always float32.
"""

from __future__ import annotations

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from wm_tf import distributions
from wm_tf.components.mlp import MLP

tfd = tfp.distributions


class ScalarNormalHead(keras.Model):
  """state [..., D] -> Normal(mean [...], 1): rewards and values.

  A unit std makes the NLL a halved squared error plus a constant.
  The output layer starts at zero so early predictions are 0, not noise.
  """

  def __init__(self, units: int = 256, layers: int = 2,
               activation: str = 'silu', **kwargs):
    super().__init__(**kwargs)
    self.mlp = MLP(units, layers, activation, name='mlp',
                   dtype=self.dtype_policy)
    self.out = keras.layers.Dense(1, kernel_initializer='zeros', name='out',
                                  dtype=self.dtype_policy)

  def call(self, state):
    mean = tf.cast(tf.squeeze(self.out(self.mlp(state)), -1), tf.float32)
    return distributions.Normal(mean, 1.0)


class RewardHead(ScalarNormalHead):
  """Reward of the transition that arrived at `state`: Normal [...]."""


class ValueHead(ScalarNormalHead):
  """The critic: expected return from `state`: Normal [...]."""


class ContinueHead(keras.Model):
  """state [..., D] -> Bernoulli(logits [...]): 1 = the episode goes on."""

  def __init__(self, units: int = 256, layers: int = 2,
               activation: str = 'silu', **kwargs):
    super().__init__(**kwargs)
    self.mlp = MLP(units, layers, activation, name='mlp',
                   dtype=self.dtype_policy)
    self.out = keras.layers.Dense(1, name='out', dtype=self.dtype_policy)

  def call(self, state):
    logits = tf.cast(tf.squeeze(self.out(self.mlp(state)), -1), tf.float32)
    return tfd.Bernoulli(logits=logits, dtype=tf.float32)


class Decoder(keras.Model):
  """state [..., D] -> Normal over observations [..., O] (unit std)."""

  def __init__(self, observation_dim: int, units: int = 256, layers: int = 2,
               activation: str = 'silu', **kwargs):
    super().__init__(**kwargs)
    self.mlp = MLP(units, layers, activation, name='mlp',
                   dtype=self.dtype_policy)
    self.out = keras.layers.Dense(observation_dim, name='out',
                                  dtype=self.dtype_policy)

  def call(self, state):
    return distributions.normal(
        tf.cast(self.out(self.mlp(state)), tf.float32), 1.0)
