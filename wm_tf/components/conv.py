"""Convolutional encoder and decoder for image observations.

Images travel as uint8 [..., H, W, C] (replay, batches, the act step) and
become floats in [-0.5, 0.5] inside the compiled step (`to_float`), the
space in which the decoder's distribution lives. With H = W = 64 and
min_resolution 4 both networks have 4 stages:

    encoder  64x64xC -> 32x32x(d) -> 16x16x(2d) -> 8x8x(4d) -> 4x4x(8d)
             -> flatten: features [..., 16 * 8d]
    decoder  latent -> Dense -> 4x4x(8d) -> 8x8x(4d) -> 16x16x(2d)
             -> 32x32x(d) -> 64x64xC (the mean image)

Each convolution but the decoder's last is followed by the normalisation
and activation of the MLPs (LayerNorm over the channels, then `activation`).
"""

from __future__ import annotations

import math
from typing import Sequence, Tuple

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from wm_tf import distributions
from wm_tf.components.layer_norm import LayerNorm

tfd = tfp.distributions


def to_float(images: tf.Tensor) -> tf.Tensor:
  """uint8 images [...] -> float32 x / 255 - 0.5 in [-0.5, 0.5] [...].

  Float images are taken to be in that space already and only cast to
  float32.
  """
  images = tf.convert_to_tensor(images)
  if images.dtype == tf.uint8:
    return tf.cast(images, tf.float32) / 255.0 - 0.5
  return tf.cast(images, tf.float32)


def to_uint8(images) -> tf.Tensor:
  """The inverse of `to_float`: float images [...] in [-0.5, 0.5] -> uint8,
  clipped and rounded (for pictures of decoded images)."""
  scaled = (tf.cast(images, tf.float32) + 0.5) * 255.0
  return tf.cast(tf.round(tf.clip_by_value(scaled, 0.0, 255.0)), tf.uint8)


def conv_stages(shape: Sequence, min_resolution: int, who: str) -> int:
  """The number of stride-2 stages that take images [..., H, W, C] down to
  min_resolution on their shorter side.

  Raises ValueError (one line) unless the shape has rank >= 4 with known
  H, W, C, the shorter side is min_resolution times a power of two (at
  least 2) and the longer side is divisible by the same power of two.
  """
  shape = tuple(shape)
  expected = (f'{who} expects images [..., H, W, C] (a batch axis at least) '
              f'with H and W min_resolution={min_resolution} times a power '
              'of two (2 or more)')
  if len(shape) < 4 or any(s is None for s in shape[-3:]):
    raise ValueError(f'{expected}; got shape {shape}.')
  height, width = shape[-3], shape[-2]
  ratio = min(height, width) / min_resolution
  stages = round(math.log2(ratio)) if ratio >= 2 else 0
  if (stages < 1 or min_resolution * 2 ** stages != min(height, width)
      or max(height, width) % 2 ** stages):
    raise ValueError(f'{expected}; got shape {shape}.')
  return stages


def _flat_rows(x: tf.Tensor, inner_rank: int) -> Tuple[tf.Tensor, tf.Tensor]:
  """x [..., *inner] -> (x as [N, *inner], the leading shape [...])."""
  leading = tf.shape(x)[:x.shape.rank - inner_rank]
  return tf.reshape(x, [-1, *x.shape[-inner_rank:]]), leading


class _ConvStack(keras.Model):
  """What the encoder and decoder share: their arguments, and a
  normalisation + activation over images [N, H, W, C]."""

  def __init__(self, depth: int = 32, kernel: int = 4,
               min_resolution: int = 4, activation: str = 'silu',
               norm: bool = True, **kwargs):
    super().__init__(**kwargs)
    self.depth = depth
    self.kernel = kernel
    self.min_resolution = min_resolution
    self.activation_name = activation
    self.norm = norm
    self.activation = keras.activations.get(activation)

  def _add_norm(self, i: int, channels: int) -> None:
    """Creates and builds norm_i over `channels` (if norm)."""
    if self.norm:
      layer = LayerNorm(epsilon=1e-3, name=f'norm_{i}',
                        dtype=self.dtype_policy)
      setattr(self, f'norm_{i}', layer)
      layer.build((None, channels))

  def _normalize_activate(self, i: int, x: tf.Tensor) -> tf.Tensor:
    """Channel-wise LayerNorm (if norm) and the activation: [N, H, W, C]."""
    if self.norm:
      # As a matrix [N * H * W, C]: its gradient then sums over one row
      # axis, which XLA's CPU backend reduces far faster than three.
      shape = tf.shape(x)
      rows = tf.reshape(x, [-1, x.shape[-1]])
      x = tf.reshape(getattr(self, f'norm_{i}')(rows), shape)
    return self.activation(x)

  def arguments(self) -> dict:
    """The constructor arguments depth, kernel, min_resolution, activation
    and norm."""
    return dict(depth=self.depth, kernel=self.kernel,
                min_resolution=self.min_resolution,
                activation=self.activation_name, norm=self.norm)

  def get_config(self):
    return {**super().get_config(), **self.arguments()}


class ConvEncoder(_ConvStack):
  """Stride-2 convolutions over images, flattened into features.

  Input: images [..., H, W, C] (any number of leading axes, e.g. [B, T]),
  uint8 (converted with `to_float`) or float (taken as in `to_float`'s
  space). H and W: min_resolution times 2^S (the shorter side; the longer
  one divisible by 2^S). Output: features [..., F] float32, F =
  (H / 2^S) * (W / 2^S) * depth * 2^(S-1) (`output_dim`), whatever dtype
  policy the layers compute in (`dtype=`).

  Stage i (0 <= i < S): Conv2D(depth * 2^i, kernel, stride 2, 'same')
  halving H and W, then LayerNorm over channels and the activation (no
  norm: the convolution has a bias instead).

  Example:
    encoder = ConvEncoder(depth=32)
    features = encoder(images)  # uint8 [16, 64, 64, 64, 3] -> [16, 64, 4096]
  """

  def build(self, input_shape):
    """Creates the S convolutions (and norms) for images [..., H, W, C]."""
    self.stages = conv_stages(input_shape, self.min_resolution,
                              type(self).__name__)
    channels = input_shape[-1]
    for i in range(self.stages):
      conv = keras.layers.Conv2D(
          self.depth * 2 ** i, self.kernel, strides=2, padding='same',
          use_bias=not self.norm, name=f'conv_{i}', dtype=self.dtype_policy)
      setattr(self, f'conv_{i}', conv)
      conv.build((None, None, None, channels))
      channels = self.depth * 2 ** i
      self._add_norm(i, channels)
    self.image_shape = tuple(input_shape[-3:])
    super().build(input_shape)

  def output_dim(self, image_shape: Sequence[int]) -> int:
    """F, the feature size for images of shape [..., H, W, C] (or (H, W,
    C))."""
    shape = (1,) * max(0, 4 - len(image_shape)) + tuple(image_shape)
    stages = conv_stages(shape, self.min_resolution, type(self).__name__)
    height, width = shape[-3] // 2 ** stages, shape[-2] // 2 ** stages
    channels = self.depth * 2 ** (stages - 1)
    return height * width * channels

  def call(self, images):
    images = tf.convert_to_tensor(images)
    if tuple(images.shape[-3:]) != self.image_shape:
      conv_stages(images.shape, self.min_resolution, type(self).__name__)
      raise ValueError(
          f'{type(self).__name__} was built for images [..., '
          f'{", ".join(map(str, self.image_shape))}]; got shape '
          f'{tuple(images.shape)}.')
    x, leading = _flat_rows(to_float(images), 3)
    for i in range(self.stages):
      x = self._normalize_activate(i, getattr(self, f'conv_{i}')(x))
    features = tf.reshape(x, tf.concat([leading, [-1]], 0))
    return tf.cast(features, tf.float32)


class ConvDecoder(_ConvStack):
  """Latent states -> a distribution over images, mirroring `ConvEncoder`.

  Input: latents [..., D] (any leading axes). Output: a float32
  distribution with batch shape [...] and event shape [H, W, C] over images
  in `to_float`'s space: Independent(Normal(mean, 1), 3).
  `.mean()` / `.mode()` give the mean image [..., H, W, C] (`to_uint8`
  turns it into a picture).

  A Dense maps the latent to (H / 2^S) x (W / 2^S) x depth * 2^(S-1)
  (then LayerNorm over channels and the activation); S - 1 transposed
  convolutions (kernel, stride 2, 'same') double the resolution with
  depth * 2^(S-2), ..., depth channels (each followed by norm and
  activation), and a last one makes C channels with a bias, no norm and no
  activation: the mean.

  Example:
    decoder = ConvDecoder(shape=(64, 64, 3), depth=32)
    nll = -decoder(latents).log_prob(to_float(images))  # [B, T]
  """

  def __init__(self, shape: Sequence[int] = (64, 64, 3), depth: int = 32,
               kernel: int = 4, min_resolution: int = 4,
               activation: str = 'silu', norm: bool = True, **kwargs):
    super().__init__(depth, kernel, min_resolution, activation, norm,
                     **kwargs)
    self.image_shape = tuple(int(s) for s in shape)
    if len(self.image_shape) != 3:
      raise ValueError(f'ConvDecoder expects shape=(H, W, C); got '
                       f'{tuple(shape)}.')
    self.stages = conv_stages((1, *self.image_shape), min_resolution,
                              type(self).__name__)
    scale = 2 ** self.stages
    self.start_shape = (self.image_shape[0] // scale,
                        self.image_shape[1] // scale,
                        depth * 2 ** (self.stages - 1))

  def build(self, input_shape):
    """Creates the Dense and S transposed convolutions for latents [..., D]."""
    self.dense = keras.layers.Dense(
        math.prod(self.start_shape), use_bias=not self.norm, name='dense',
        dtype=self.dtype_policy)
    self.dense.build((None, input_shape[-1]))
    self._add_norm(0, self.start_shape[-1])
    channels = self.start_shape[-1]
    for i in range(self.stages):
      last = i == self.stages - 1
      filters = self.image_shape[-1] if last else self.depth * 2 ** (
          self.stages - 2 - i)
      conv = keras.layers.Conv2DTranspose(
          filters, self.kernel, strides=2, padding='same',
          use_bias=last or not self.norm, name=f'deconv_{i}',
          dtype=self.dtype_policy)
      setattr(self, f'deconv_{i}', conv)
      conv.build((None, None, None, channels))
      channels = filters
      if not last:
        self._add_norm(i + 1, channels)
    super().build(input_shape)

  def call(self, latents):
    x, leading = _flat_rows(tf.convert_to_tensor(latents), 1)
    x = tf.reshape(self.dense(x), [-1, *self.start_shape])
    x = self._normalize_activate(0, x)
    for i in range(self.stages):
      x = getattr(self, f'deconv_{i}')(x)
      if i < self.stages - 1:
        x = self._normalize_activate(i + 1, x)
    mean = tf.reshape(tf.cast(x, tf.float32),
                      tf.concat([leading, self.image_shape], 0))
    # Unit std: the NLL is half the summed squared error plus a constant,
    # so the image term's gradient is a plain per-pixel regression whose
    # weight against the other losses stays fixed (a learned std would let
    # the model buy likelihood by shrinking it on easy pixels).
    return tfd.Independent(distributions.Normal(mean, 1.0),
                           reinterpreted_batch_ndims=3)

  def get_config(self):
    return {**super().get_config(), 'shape': self.image_shape}
