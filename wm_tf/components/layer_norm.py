"""Layer normalisation whose reductions are matrix-vector products.

`LayerNorm` is `keras.layers.LayerNormalization` over the last axis (same
weights `gamma` [D] and `beta` [D], same config, so checkpoints and saved
models are interchangeable), with one difference in how it computes:

  mean     = x @ (1/D) [D]               [..., 1]
  variance = (x - mean)^2 @ (1/D) [D]    [..., 1]
  x_hat    = (x - mean) * rsqrt(variance + epsilon)
  y        = x_hat * gamma + beta

and its gradient is written out (`layer_norm`), with the two row means of
the backward pass also as matrix-vector products:

  g  = dy * gamma
  dx = rsqrt(variance + epsilon) * (g - mean(g) - x_hat * mean(g * x_hat))
  dgamma = sum over rows of dy * x_hat,   dbeta = sum over rows of dy

Keras reduces with reduce_mean, and autodiff adds a row reduction per
LayerNorm to the backward pass. Under XLA on CPU a row reduction over the
features becomes a tree of reduce-window and reduce thunks (one pass and a
thunk each); a matrix-vector product is one dot, run by the matmul
library across the cores. In the default train step (its LayerNorms see up
to [15,360, 256] activations) the forward form made the step about 8%
faster in paired timings, and the written-out gradient 3% more
(`benchmarks/step_profile.py` shows where the time goes). The statistics
are computed in float32 whatever the input dtype, as Keras does.
"""

from __future__ import annotations

import keras
import tensorflow as tf


def layer_norm(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor,
               epsilon: float) -> tf.Tensor:
  """Normalises the last axis of x [..., D] (float32), then scales by gamma
  [D] and offsets by beta [D]; returns [..., D] with the gradient above."""
  depth = x.shape[-1]
  average = tf.fill([depth], 1.0 / depth)
  row_axes = list(range(len(x.shape) - 1))

  def row_mean(values):  # [..., D] -> [..., 1]
    return tf.linalg.matvec(values, average)[..., None]

  @tf.custom_gradient
  def normalize(x, gamma, beta):
    centered = x - row_mean(x)
    inverse_std = tf.math.rsqrt(row_mean(tf.square(centered)) + epsilon)
    normalized = centered * inverse_std

    def gradient(dy):
      scaled = dy * gamma
      dx = inverse_std * (scaled - row_mean(scaled)
                          - normalized * row_mean(scaled * normalized))
      return (dx, tf.reduce_sum(dy * normalized, axis=row_axes),
              tf.reduce_sum(dy, axis=row_axes))

    return normalized * gamma + beta, gradient

  return normalize(x, gamma, beta)


class LayerNorm(keras.layers.LayerNormalization):
  """LayerNorm over the last axis: [..., D] -> [..., D] (compute dtype).

  Takes the arguments of `keras.layers.LayerNormalization` except `axis`
  (always -1), `center` and `scale` (always on) and `rms_scaling` (off).
  """

  # The settings this layer always has; `from_config` passes them back.
  FIXED = {'axis': (-1, [-1], (-1,)), 'center': (True,), 'scale': (True,),
           'rms_scaling': (False,)}

  def __init__(self, epsilon: float = 1e-3, **kwargs):
    for name, allowed in self.FIXED.items():
      if name in kwargs and kwargs.pop(name) not in allowed:
        raise ValueError(f'LayerNorm only takes {name}={allowed[0]!r}: it '
                         'normalises the last axis with a learned scale and '
                         'offset.')
    super().__init__(axis=-1, epsilon=epsilon, **kwargs)

  def call(self, inputs):
    outputs = layer_norm(tf.cast(inputs, tf.float32),
                         tf.cast(self.gamma, tf.float32),
                         tf.cast(self.beta, tf.float32), self.epsilon)
    return tf.cast(outputs, self.compute_dtype)
