"""wm_tf/components/mlp.py against a float64 NumPy MLP, and the shape of
its compiled gradient."""

import re

import numpy as np
import pytest
import tensorflow as tf

from wm_tf.components.mlp import MLP


def _numpy_mlp(x, kernels, gammas, betas, epsilon=1e-3):
  """Dense (no bias) -> LayerNorm -> SiLU per layer, float64, any rank."""
  h = x.astype(np.float64)
  for kernel, gamma, beta in zip(kernels, gammas, betas):
    h = h @ kernel
    mean = h.mean(-1, keepdims=True)
    variance = ((h - mean) ** 2).mean(-1, keepdims=True)
    h = (h - mean) / np.sqrt(variance + epsilon) * gamma + beta
    h = h / (1.0 + np.exp(-h))
  return h


@pytest.mark.parametrize('shape', [(5,), (7, 5), (3, 4, 5), (2, 3, 2, 5)])
def test_mlp_matches_numpy_for_inputs_of_any_rank(shape):
  rng = np.random.default_rng(0)
  mlp = MLP(units=6, layers=2)
  x = rng.normal(size=shape).astype(np.float32)
  y = mlp(tf.constant(x))
  kernels = [mlp.dense_0.kernel.numpy(), mlp.dense_1.kernel.numpy()]
  gammas, betas = [], []
  for norm in (mlp.norm_0, mlp.norm_1):
    gammas.append(rng.normal(size=6).astype(np.float32))
    betas.append(rng.normal(size=6).astype(np.float32))
    norm.gamma.assign(gammas[-1])
    norm.beta.assign(betas[-1])
  y = mlp(tf.constant(x))
  assert y.shape == shape[:-1] + (6,)
  np.testing.assert_allclose(y.numpy(), _numpy_mlp(x, kernels, gammas, betas),
                             rtol=1e-4, atol=1e-5)


def test_mlp_without_layers_returns_its_input():
  x = tf.random.normal([2, 3, 4])
  assert MLP(units=8, layers=0)(x) is x


def test_compiled_gradient_of_a_sequence_batch_sums_over_one_row_axis():
  """An MLP over [B, T, D] works on [B * T, D] rows: each sum over rows in
  its XLA gradient (LayerNorm's scale and offset) reduces one axis. Sums
  over two axes {0,1} become slow reduce-window thunks on XLA's CPU backend
  (about 4 ms against 0.3 ms in the default train step)."""
  mlp = MLP(units=16, layers=2)
  x = tf.random.normal([4, 6, 8])
  mlp(x)

  @tf.function(jit_compile=True)
  def gradients(x):
    with tf.GradientTape() as tape:
      loss = tf.reduce_sum(mlp(x) ** 2)
    return tape.gradient(loss, mlp.trainable_variables)

  hlo = gradients.experimental_get_compiler_ir(x)(stage='optimized_hlo')
  reduced = re.findall(r' reduce(?:-window)?\(.*?dimensions=\{([\d,]*)\}', hlo)
  assert len(reduced) == 4  # scale and offset of two LayerNorms
  assert set(reduced) == {'0'}, reduced
