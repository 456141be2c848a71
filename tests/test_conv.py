"""wm_tf/components/conv.py: shapes, the uint8 path, gradients, config,
the decoder's likelihood against a closed form, XLA, precision, errors,
and an autoencoder that has to learn."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from wm_tf.components.conv import (ConvDecoder, ConvEncoder, conv_stages,
                                   to_float, to_uint8)

SHAPE = (64, 64, 3)


def _images(leading, shape=SHAPE, seed=0):
  rng = np.random.default_rng(seed)
  return rng.integers(0, 256, size=(*leading, *shape), dtype=np.uint8)


def test_to_float_and_to_uint8():
  x = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)
  y = to_float(x)
  assert y.dtype == tf.float32
  np.testing.assert_allclose(y.numpy(), x / 255.0 - 0.5, atol=1e-7)
  np.testing.assert_array_equal(to_uint8(y).numpy(), x)
  floats = np.linspace(-0.5, 0.5, 7, dtype=np.float64)
  np.testing.assert_array_equal(to_float(floats).numpy(),
                                floats.astype(np.float32))
  assert to_uint8(tf.constant([-3.0, 3.0])).numpy().tolist() == [0, 255]


@pytest.mark.parametrize('leading', [(3,), (2, 3)])
def test_shapes_for_any_leading_axes(leading):
  encoder, decoder = ConvEncoder(depth=4), ConvDecoder(SHAPE, depth=4)
  features = encoder(_images(leading))
  # 4 stages: 4 x 4 x (4 * 2^3) features.
  assert features.shape == (*leading, 4 * 4 * 32) and features.dtype == 'float32'
  assert encoder.output_dim(SHAPE) == 512
  assert len([v for v in encoder.variables if 'kernel' in v.path]) == 4
  dist = decoder(features)
  assert dist.batch_shape == leading and dist.event_shape == SHAPE
  assert dist.mean().shape == (*leading, *SHAPE) and dist.dtype == tf.float32
  np.testing.assert_array_equal(dist.mean().numpy(), dist.mode().numpy())
  assert dist.log_prob(to_float(_images(leading))).shape == leading


def test_non_square_images_and_stage_count():
  assert conv_stages((1, 64, 64, 3), 4, 'x') == 4
  assert conv_stages((1, 32, 96, 1), 4, 'x') == 3
  encoder = ConvEncoder(depth=2)
  assert encoder(_images((2,), (32, 96, 1))).shape == (2, 4 * 12 * 8)
  dist = ConvDecoder((32, 96, 1), depth=2)(tf.zeros([2, 5]))
  assert dist.event_shape == (32, 96, 1)


def test_uint8_images_equal_their_float_conversion():
  encoder = ConvEncoder(depth=4)
  x = _images((2, 3))
  np.testing.assert_allclose(encoder(x).numpy(),
                             encoder(to_float(x)).numpy(), rtol=1e-6,
                             atol=1e-6)


@pytest.mark.parametrize('norm', [True, False])
def test_gradients_reach_every_weight(norm):
  encoder = ConvEncoder(depth=4, norm=norm)
  decoder = ConvDecoder(SHAPE, depth=4, norm=norm)
  x = _images((2, 2))
  with tf.GradientTape() as tape:
    loss = -tf.reduce_mean(decoder(encoder(x)).log_prob(to_float(x)))
  variables = encoder.trainable_variables + decoder.trainable_variables
  # Kernels everywhere; LayerNorm scale and offset, or biases without norm.
  assert len(variables) == (4 + 5) * (3 if norm else 2) - (1 if norm else 0)
  for variable, gradient in zip(variables, tape.gradient(loss, variables)):
    assert gradient is not None, variable.path
    assert np.all(np.isfinite(gradient.numpy())), variable.path
    assert np.any(gradient.numpy() != 0), variable.path


def _copy(source, target, inputs):
  """Builds target (and source) on inputs; gives target source's weights."""
  source(inputs)
  target(inputs)
  target.set_weights(source.get_weights())
  return target


def test_config_round_trip():
  encoder = ConvEncoder(depth=3, kernel=3, min_resolution=8, activation='elu',
                        norm=False, name='enc')
  decoder = ConvDecoder((32, 32, 1), depth=3, kernel=5, min_resolution=8,
                        activation='relu', name='dec')
  x = _images((2,), (32, 32, 1))
  features = encoder(x)
  decoder(features)
  config = encoder.get_config()
  assert {k: config[k] for k in encoder.arguments()} == dict(
      depth=3, kernel=3, min_resolution=8, activation='elu', norm=False)
  assert decoder.get_config()['shape'] == (32, 32, 1)
  encoder_copy = _copy(encoder, ConvEncoder.from_config(config), x)
  decoder_copy = _copy(decoder, ConvDecoder.from_config(
      decoder.get_config()), features)
  for original, copy in ((encoder, encoder_copy), (decoder, decoder_copy)):
    assert [v.shape for v in original.weights] == [
        v.shape for v in copy.weights]
    assert copy.get_config() == original.get_config()
  np.testing.assert_array_equal(encoder_copy(x).numpy(), features.numpy())
  np.testing.assert_array_equal(decoder_copy(features).mean().numpy(),
                                decoder(features).mean().numpy())


def test_decoder_log_prob_is_the_closed_form():
  decoder = ConvDecoder((16, 16, 2), depth=4)
  latents = tf.random.stateless_normal([3, 2, 7], seed=[1, 2])
  dist = decoder(latents)
  mean = dist.mean().numpy().astype(np.float64)
  x = to_float(_images((3, 2), (16, 16, 2))).numpy().astype(np.float64)
  count = 16 * 16 * 2
  expected = (-0.5 * np.sum((x - mean) ** 2, axis=(-3, -2, -1))
              - 0.5 * count * np.log(2 * np.pi))
  np.testing.assert_allclose(dist.log_prob(x.astype(np.float32)).numpy(),
                             expected, rtol=1e-5)


def test_xla_compiles_and_matches_eager():
  encoder = ConvEncoder(depth=4)
  decoder = ConvDecoder(SHAPE, depth=4)
  x = tf.constant(_images((2, 2)))

  def loss_and_gradients(x):
    with tf.GradientTape() as tape:
      loss = -tf.reduce_mean(decoder(encoder(x)).log_prob(to_float(x)))
    variables = encoder.trainable_variables + decoder.trainable_variables
    return loss, tape.gradient(loss, variables)

  eager_loss, eager_gradients = loss_and_gradients(x)
  compiled = tf.function(loss_and_gradients, jit_compile=True)
  loss, gradients = compiled(x)
  assert 'Conv' in compiled.experimental_get_compiler_ir(x)(stage='hlo')
  np.testing.assert_allclose(loss.numpy(), eager_loss.numpy(), rtol=1e-4)
  for g, e in zip(gradients, eager_gradients):
    np.testing.assert_allclose(g.numpy(), e.numpy(), rtol=1e-3,
                               atol=1e-4 * np.abs(e.numpy()).max())


def test_bfloat16_layers_float32_weights_and_outputs():
  x = _images((2, 2))
  single = (ConvEncoder(depth=4), ConvDecoder(SHAPE, depth=4))
  half = (ConvEncoder(depth=4, dtype='mixed_bfloat16'),
          ConvDecoder(SHAPE, depth=4, dtype='mixed_bfloat16'))
  _copy(single[0], half[0], x)
  _copy(single[1], half[1], single[0](x))
  assert half[0].conv_0.compute_dtype == 'bfloat16'
  assert half[1].deconv_3.compute_dtype == 'bfloat16'
  for model in half:
    assert all(v.dtype == 'float32' for v in model.variables)

  @tf.function(jit_compile=True)
  def decoded(x):
    return half[1](half[0](x)).mean()

  features = half[0](x)
  assert features.dtype == tf.float32
  mean = decoded(x)
  assert mean.dtype == tf.float32
  np.testing.assert_allclose(features.numpy(), single[0](x).numpy(),
                             atol=0.1)
  reference = single[1](single[0](x)).mean().numpy()
  assert np.abs(mean.numpy() - reference).max() < 0.1 * np.abs(
      reference).max() + 0.02


@pytest.mark.parametrize('shape', [
    (2, 60, 64, 3),   # not 4 * 2^k
    (2, 4, 4, 3),     # no stage left
    (64, 64, 3),      # no batch axis
    (2, 32, 36, 3),   # longer side not divisible by 2^3
])
def test_bad_image_shapes_are_one_clear_line(shape):
  with pytest.raises(ValueError) as error:
    ConvEncoder(depth=2)(tf.zeros(shape))
  message = str(error.value)
  assert '\n' not in message
  assert 'expects images [..., H, W, C]' in message
  assert f'got shape {shape}' in message
  if len(shape) == 4:  # (64, 64, 3) is a valid image shape
    with pytest.raises(ValueError, match=r'ConvDecoder expects images'):
      ConvDecoder(shape[1:])
  with pytest.raises(ValueError, match=r'ConvDecoder expects shape=\(H, W, '
                     r'C\); got \(64, 64\)'):
    ConvDecoder((64, 64))


def test_encoder_refuses_images_of_another_shape_than_it_was_built_for():
  encoder = ConvEncoder(depth=2)
  encoder(tf.zeros([1, 32, 32, 3]))
  with pytest.raises(ValueError, match=r'built for images \[\.\.\., 32, 32, '
                     r'3\]; got shape \(1, 64, 64, 3\)'):
    encoder(tf.zeros([1, 64, 64, 3]))


def _squares(count, rng):
  """Colored squares of random size and place on a gray background."""
  images = np.full((count, 64, 64, 3), 128, np.uint8)
  for image in images:
    size = rng.integers(12, 28)
    top, left = rng.integers(0, 64 - size, size=2)
    image[top:top + size, left:left + size] = rng.integers(0, 256, size=3)
  return images


def test_autoencoder_learns_to_reconstruct_squares():
  keras.utils.set_random_seed(0)
  images = tf.constant(_squares(8, np.random.default_rng(0)))
  target = to_float(images)
  encoder, decoder = ConvEncoder(depth=8), ConvDecoder(SHAPE, depth=8)
  optimizer = keras.optimizers.Adam(2e-3)

  def mse():
    return float(tf.reduce_mean(
        tf.square(decoder(encoder(images)).mean() - target)))

  before = mse()
  variables = encoder.trainable_variables + decoder.trainable_variables
  optimizer.build(variables)

  @tf.function(jit_compile=True)
  def train_step():
    with tf.GradientTape() as tape:
      loss = -tf.reduce_mean(decoder(encoder(images)).log_prob(target))
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))

  for _ in range(300):
    train_step()
  after = mse()
  assert after < before / 20, (before, after)


def test_checkpoint_restores_weights_by_name(tmp_path):
  """The layers are made in build; tf.train.Checkpoint still finds them by
  attribute name, also when restored before the model is built."""
  x = _images((2,), (32, 32, 3))
  encoder, decoder = ConvEncoder(depth=4), ConvDecoder((32, 32, 3), depth=4)
  mean = decoder(encoder(x)).mean().numpy()
  path = tf.train.Checkpoint(encoder=encoder, decoder=decoder).write(
      str(tmp_path / 'ckpt'))
  fresh = ConvEncoder(depth=4), ConvDecoder((32, 32, 3), depth=4)
  tf.train.Checkpoint(encoder=fresh[0], decoder=fresh[1]).read(
      path).assert_existing_objects_matched()
  np.testing.assert_array_equal(fresh[1](fresh[0](x)).mean().numpy(), mean)
