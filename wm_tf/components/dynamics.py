"""Dynamics models: p(s_{t+1} | s_t, a_t) over latent states.

A dynamics model is a Keras model with
  call(state [..., D], action [..., A]) -> distribution over [..., D].
"""

from __future__ import annotations

import keras
import tensorflow as tf

from wm_tf import distributions
from wm_tf.components.mlp import MLP
from wm_tf.registry import Registry

DYNAMICS = Registry('dynamics')


@DYNAMICS.register('gaussian')
class GaussianDynamics(keras.Model):
  """Diagonal Normal over the next latent state.

  std='fixed' uses `fixed_std` everywhere (the design's 1e-4: the NLL is
  then an MSE scaled by 1 / (2 * 1e-8)); std='learned' predicts it, squashed
  into [min_std, max_std] by a sigmoid so the NLL stays bounded below.
  """

  def __init__(self, latent_dim: int, std: str = 'learned',
               fixed_std: float = 1e-4, min_std: float = 0.01,
               max_std: float = 1.0, units: int = 256, layers: int = 2,
               activation: str = 'silu', **kwargs):
    super().__init__(**kwargs)
    if std not in ('learned', 'fixed'):
      raise ValueError(f"std must be 'learned' or 'fixed', got {std!r}.")
    self.latent_dim = latent_dim
    self.std_mode = std
    self.fixed_std = fixed_std
    self.min_std = min_std
    self.max_std = max_std
    self.mlp = MLP(units, layers, activation, name='mlp')
    self.mean = keras.layers.Dense(latent_dim, name='mean')
    if std == 'learned':
      self.std = keras.layers.Dense(latent_dim, name='std')

  def call(self, state, action):
    hidden = self.mlp(tf.concat([state, action], -1))
    mean = self.mean(hidden)
    if self.std_mode == 'fixed':
      scale = tf.fill(tf.shape(mean), tf.cast(self.fixed_std, mean.dtype))
    else:
      scale = self.min_std + (self.max_std - self.min_std) * tf.sigmoid(
          self.std(hidden) + 2.0)
    return distributions.normal(mean, scale)
