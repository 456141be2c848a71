"""wm_tf/components/layer_norm.py against keras.layers.LayerNormalization,
a float64 NumPy reference and finite differences of it."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from wm_tf.components.layer_norm import LayerNorm, layer_norm


def _numpy_layer_norm(x, gamma, beta, epsilon):
  x = x.astype(np.float64)
  mean = x.mean(-1, keepdims=True)
  variance = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(variance + epsilon) * gamma + beta


@pytest.mark.parametrize('shape', [(7, 16), (3, 5, 32)])
def test_layer_norm_matches_numpy_and_keras_with_gradients(shape):
  rng = np.random.default_rng(0)
  x = tf.constant(rng.normal(3.0, 2.0, size=shape), tf.float32)
  ours = LayerNorm(epsilon=1e-3)
  reference = keras.layers.LayerNormalization(epsilon=1e-3)
  ours.build(x.shape)
  reference.build(x.shape)
  gamma = rng.normal(size=shape[-1]).astype(np.float32)
  beta = rng.normal(size=shape[-1]).astype(np.float32)
  for layer in (ours, reference):
    layer.gamma.assign(gamma)
    layer.beta.assign(beta)
  upstream = tf.constant(rng.normal(size=shape), tf.float32)
  grads = []
  for layer in (ours, reference):
    with tf.GradientTape() as tape:
      tape.watch(x)
      y = layer(x)
      loss = tf.reduce_sum(y * upstream)
    grads.append(tape.gradient(loss, [x, layer.gamma, layer.beta]))
    np.testing.assert_allclose(
        y.numpy(), _numpy_layer_norm(x.numpy(), gamma, beta, 1e-3),
        rtol=1e-4, atol=1e-4)
  for ours_grad, keras_grad in zip(*grads):
    np.testing.assert_allclose(ours_grad.numpy(), keras_grad.numpy(),
                               rtol=1e-4, atol=1e-4)


def test_written_out_gradient_matches_finite_differences_under_xla():
  """The custom gradient of `layer_norm`, compiled with XLA, against
  central differences of the float64 NumPy forward pass."""
  rng = np.random.default_rng(1)
  x = rng.normal(1.0, 3.0, size=(2, 3, 8))
  gamma = rng.normal(size=8)
  beta = rng.normal(size=8)
  upstream = rng.normal(size=(2, 3, 8))

  @tf.function(jit_compile=True)
  def gradients(x, gamma, beta):
    with tf.GradientTape() as tape:
      tape.watch([x, gamma, beta])
      loss = tf.reduce_sum(layer_norm(x, gamma, beta, 1e-3) * upstream)
    return tape.gradient(loss, [x, gamma, beta])

  ours = gradients(*(tf.constant(v, tf.float32) for v in (x, gamma, beta)))

  def loss(x, gamma, beta):
    return np.sum(_numpy_layer_norm(x, gamma, beta, 1e-3) * upstream)

  step = 1e-6
  for index, value in enumerate((x, gamma, beta)):
    expected = np.zeros_like(value)
    for position in np.ndindex(value.shape):
      args = [x, gamma, beta]
      plus, minus = value.copy(), value.copy()
      plus[position] += step
      minus[position] -= step
      args[index] = plus
      high = loss(*args)
      args[index] = minus
      expected[position] = (high - loss(*args)) / (2 * step)
    np.testing.assert_allclose(ours[index].numpy(), expected, rtol=1e-3,
                               atol=1e-3)


def test_layer_norm_compiles_and_keeps_the_compute_dtype():
  x = tf.random.normal([6, 16], seed=1) * 5.0 + 2.0
  layer = LayerNorm(dtype='mixed_bfloat16')
  y = tf.function(layer, jit_compile=True)(tf.cast(x, tf.bfloat16))
  assert y.dtype == tf.bfloat16 and layer.gamma.dtype == tf.float32
  y = y.numpy().astype(np.float32)
  np.testing.assert_allclose(y.mean(-1), 0.0, atol=0.05)
  np.testing.assert_allclose(y.std(-1), 1.0, atol=0.05)


def test_layer_norm_weights_and_config_are_keras_ones():
  layer = LayerNorm(epsilon=1e-3, name='norm_0')
  layer.build((None, 8))
  assert [v.path for v in layer.weights] == ['norm_0/gamma', 'norm_0/beta']
  config = layer.get_config()
  assert config['axis'] in (-1, [-1]) and config['epsilon'] == 1e-3
  assert type(LayerNorm.from_config(config)) is LayerNorm
  with pytest.raises(ValueError, match='rms_scaling=False'):
    LayerNorm(rms_scaling=True)
