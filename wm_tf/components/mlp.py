"""The multilayer perceptron every component is built from."""

from __future__ import annotations

import keras


class MLP(keras.layers.Layer):
  """`layers` x (Dense without bias -> LayerNorm -> activation).

  LayerNorm keeps activations in range whatever the input scale, which lets
  one learning rate fit observation, latent and action inputs alike.

  Input [..., D_in] -> output [..., units] (the input itself if layers=0).
  """

  def __init__(self, units: int = 256, layers: int = 2,
               activation: str = 'silu', **kwargs):
    super().__init__(**kwargs)
    self.units = units
    self.num_layers = layers
    self.activation_name = activation
    self.blocks = []
    for i in range(layers):
      self.blocks.append((
          keras.layers.Dense(units, use_bias=False, name=f'dense_{i}'),
          keras.layers.LayerNormalization(epsilon=1e-3, name=f'norm_{i}'),
          keras.layers.Activation(activation, name=f'act_{i}'),
      ))

  def call(self, x):
    for dense, norm, act in self.blocks:
      x = act(norm(dense(x)))
    return x

  def get_config(self):
    config = super().get_config()
    config.update(units=self.units, layers=self.num_layers,
                  activation=self.activation_name)
    return config
