"""The actor: latent state [..., D] -> action distribution [..., A]."""

from __future__ import annotations

from typing import Optional, Sequence

import keras
import tensorflow as tf

from wm_tf import distributions
from wm_tf.components.mlp import MLP


class Actor(keras.Model):
  """Discrete actions: one-hot categorical with straight-through samples.
  Continuous actions: tanh-squashed Normal inside [low, high].

  Both distributions have `deterministic_action()` for evaluation, and
  their samples are one-hot [..., A] or bounded vectors [..., A]. They are
  float32 whatever dtype policy the layers compute in (`dtype=`).
  """

  def __init__(self, action_dim: int, discrete: bool,
               low: Optional[Sequence[float]] = None,
               high: Optional[Sequence[float]] = None,
               units: int = 256, layers: int = 2, activation: str = 'silu',
               min_std: float = 0.1, max_std: float = 1.0, **kwargs):
    super().__init__(**kwargs)
    if not discrete and (low is None or high is None):
      raise ValueError('A continuous actor needs action bounds low and high.')
    self.action_dim = action_dim
    self.discrete = discrete
    self.low = None if discrete else tf.constant(low, tf.float32)
    self.high = None if discrete else tf.constant(high, tf.float32)
    self.min_std = min_std
    self.max_std = max_std
    self.mlp = MLP(units, layers, activation, name='mlp',
                   dtype=self.dtype_policy)
    outputs = action_dim if discrete else 2 * action_dim
    self.out = keras.layers.Dense(
        outputs, kernel_initializer=keras.initializers.VarianceScaling(0.01),
        name='out', dtype=self.dtype_policy)

  def call(self, state):
    out = tf.cast(self.out(self.mlp(state)), tf.float32)
    if self.discrete:
      return distributions.StraightThroughOneHot(logits=out)
    mean, std = tf.split(out, 2, -1)
    std = self.min_std + (self.max_std - self.min_std) * tf.sigmoid(std + 2.0)
    return distributions.SquashedNormal(mean, std, self.low, self.high)

  def get_config(self):
    bound = lambda b: None if b is None else [float(x) for x in b.numpy()]
    return {**super().get_config(), **self.mlp.arguments(),
            'action_dim': self.action_dim, 'discrete': self.discrete,
            'low': bound(self.low), 'high': bound(self.high),
            'min_std': self.min_std, 'max_std': self.max_std}
