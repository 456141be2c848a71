"""Layer normalisation whose reductions are matrix-vector products.

`LayerNorm` is `keras.layers.LayerNormalization` over the last axis (same
weights `gamma` [D] and `beta` [D], same config, so checkpoints and saved
models are interchangeable), with one difference in how it computes:

  mean     = x @ (1/D) [D]               [..., 1]
  variance = (x - mean)^2 @ (1/D) [D]    [..., 1]
  y        = (x - mean) * rsqrt(variance + epsilon) * gamma + beta

Keras reduces with reduce_mean. Under XLA on CPU a row reduction over the
features becomes a tree of reduce-window and reduce thunks (one pass and a
thunk each); a matrix-vector product is one dot, run by the matmul
library across the cores. In the default train step (its LayerNorms see up
to [15,360, 256] activations) that made the step about 8% faster in paired
timings (`benchmarks/step_profile.py` shows where the time goes). The
statistics are computed in float32 whatever the input dtype, as Keras does.
"""

from __future__ import annotations

import keras
import tensorflow as tf


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
    x = tf.cast(inputs, tf.float32)
    average = tf.fill([x.shape[-1]], 1.0 / x.shape[-1])
    mean = tf.linalg.matvec(x, average)[..., None]
    centered = x - mean
    variance = tf.linalg.matvec(tf.square(centered), average)[..., None]
    scale = tf.math.rsqrt(variance + self.epsilon) * tf.cast(self.gamma,
                                                             tf.float32)
    outputs = centered * scale + tf.cast(self.beta, tf.float32)
    return tf.cast(outputs, self.compute_dtype)
