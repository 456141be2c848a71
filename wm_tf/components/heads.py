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


SCALAR_DISTRIBUTIONS = ('normal', 'twohot')


class ScalarHead(keras.Model):
  """state [..., D] -> a distribution over a scalar [...]: rewards, values.

  distribution='normal': Normal(mean, 1); the unit std makes the NLL a
  halved squared error plus a constant. distribution='twohot':
  `distributions.TwoHotSymlog` over TWOHOT_BINS logits, a cross-entropy
  in symlog space whose gradient does not grow with the target's scale.
  Either way the output layer starts at zero, so early predictions are 0,
  not noise (the two-hot bins are symmetric about 0).
  """

  def __init__(self, units: int = 256, layers: int = 2,
               activation: str = 'silu', distribution: str = 'normal',
               **kwargs):
    super().__init__(**kwargs)
    if distribution not in SCALAR_DISTRIBUTIONS:
      raise ValueError(f'Unknown scalar head distribution {distribution!r}; '
                       f'allowed: {SCALAR_DISTRIBUTIONS}.')
    self.distribution = distribution
    self.mlp = MLP(units, layers, activation, name='mlp',
                   dtype=self.dtype_policy)
    outputs = 1 if distribution == 'normal' else distributions.TWOHOT_BINS
    self.out = keras.layers.Dense(outputs, kernel_initializer='zeros',
                                  name='out', dtype=self.dtype_policy)

  @property
  def in_symlog_space(self) -> bool:
    """True if the distribution already regresses symlog targets."""
    return self.distribution == 'twohot'

  def call(self, state):
    out = tf.cast(self.out(self.mlp(state)), tf.float32)
    if self.distribution == 'twohot':
      return distributions.TwoHotSymlog(out)
    return distributions.Normal(tf.squeeze(out, -1), 1.0)

  def get_config(self):
    return {**super().get_config(), **self.mlp.arguments(),
            'distribution': self.distribution}


class RewardHead(ScalarHead):
  """Reward of the transition that arrived at `state`: a distribution [...]."""


class ValueHead(ScalarHead):
  """The critic: expected return from `state`, a distribution over [...]."""


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

  def get_config(self):
    return {**super().get_config(), **self.mlp.arguments()}


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

  def get_config(self):
    return {**super().get_config(), **self.mlp.arguments(),
            'observation_dim': self.out.units}
