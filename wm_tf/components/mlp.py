"""The multilayer perceptron every component is built from."""

from __future__ import annotations

import keras
import tensorflow as tf

from wm_tf.components.layer_norm import LayerNorm


class MLP(keras.layers.Layer):
  """`layers` x (Dense without bias -> LayerNorm -> activation).

  LayerNorm keeps activations in range whatever the input scale, which lets
  one learning rate fit observation, latent and action inputs alike (its
  reductions are matrix-vector products: see layer_norm.py).

  Input [..., D_in] -> output [..., units] (the input itself if layers=0),
  in the compute dtype of the layer's dtype policy (`dtype=`, e.g.
  'mixed_bfloat16'), which its Dense and LayerNorm layers share.
  """

  def __init__(self, units: int = 256, layers: int = 2,
               activation: str = 'silu', **kwargs):
    super().__init__(**kwargs)
    self.units = units
    self.num_layers = layers
    self.activation_name = activation
    # Named attributes (not a list of tuples) so that tf.train.Checkpoint
    # saves every weight by name, never by variable order.
    for i in range(layers):
      setattr(self, f'dense_{i}',
              keras.layers.Dense(units, use_bias=False, name=f'dense_{i}',
                                 dtype=self.dtype_policy))
      setattr(self, f'norm_{i}',
              LayerNorm(epsilon=1e-3, name=f'norm_{i}',
                        dtype=self.dtype_policy))
    self.activation = keras.activations.get(activation)

  def build(self, input_shape):
    """Creates the weights of every layer for inputs [..., D_in]."""
    shape = (None, input_shape[-1])
    for i in range(self.num_layers):
      getattr(self, f'dense_{i}').build(shape)
      shape = (None, self.units)
      getattr(self, f'norm_{i}').build(shape)
    super().build(input_shape)

  def output_dim(self, input_dim: int) -> int:
    """The size of the last axis of the output for inputs [..., input_dim]."""
    return self.units if self.num_layers else input_dim

  def call(self, x):
    if not self.num_layers:
      return x
    # The layers see one matrix [rows, features]: on XLA's CPU backend the
    # gradients' sums over rows of a rank-3 tensor [B, T, D] become slow
    # reduce-window thunks, many times slower than a matrix's, and a matmul
    # of a matrix needs no reshapes around it. Reshapes are free.
    batch_shape = tf.shape(x)[:-1]
    h = tf.reshape(x, [-1, x.shape[-1]])
    for i in range(self.num_layers):
      h = self.activation(getattr(self, f'norm_{i}')(
          getattr(self, f'dense_{i}')(h)))
    return tf.reshape(h, tf.concat([batch_shape, [self.units]], 0))

  def arguments(self) -> dict:
    """The constructor arguments units, layers and activation."""
    return dict(units=self.units, layers=self.num_layers,
                activation=self.activation_name)

  def get_config(self):
    config = super().get_config()
    config.update(self.arguments())
    return config
