"""wm_tf/distributions.py's noise: Philox by default, Threefry inside
`xla_sampling()` (the XLA-compiled train steps)."""

import threading

import numpy as np
import pytest
import tensorflow as tf

from wm_tf import distributions

SEED = tf.constant([7, 11], tf.int32)


def _reference(shape, alg):
  return tf.random.stateless_normal(shape, seed=SEED, alg=alg)


def test_standard_normal_is_philox_outside_the_context():
  assert distributions.sampling_algorithm() == 'philox'
  np.testing.assert_array_equal(
      distributions.standard_normal([5, 3], SEED), _reference([5, 3],
                                                              'philox'))


def test_xla_sampling_draws_threefry_in_a_compiled_function():
  def noise():
    with distributions.xla_sampling():
      return distributions.standard_normal([4, 6], SEED)

  ours = tf.function(noise, jit_compile=True)()
  expected = tf.function(lambda: _reference([4, 6], 'threefry'),
                         jit_compile=True)()
  np.testing.assert_array_equal(ours, expected)
  assert not np.allclose(ours, _reference([4, 6], 'philox'))


def test_threefry_noise_is_standard_normal():
  """Moments and tails of 400,000 draws against N(0, 1)."""
  def noise():
    with distributions.xla_sampling():
      return distributions.standard_normal([400_000], SEED)

  x = tf.function(noise, jit_compile=True)().numpy().astype(np.float64)
  # Standard errors: mean 0.0016, std 0.0011, tail fraction 0.00034.
  assert abs(x.mean()) < 0.01
  assert abs(x.std() - 1.0) < 0.01
  assert abs(np.mean(np.abs(x) > 1.959964) - 0.05) < 0.002
  assert abs(np.mean(x ** 3)) < 0.03 and abs(np.mean(x ** 4) - 3.0) < 0.06


def test_context_is_restored_after_errors_and_nesting_and_per_thread():
  seen = {}
  with pytest.raises(RuntimeError):
    with distributions.xla_sampling():
      with distributions.xla_sampling():
        pass
      seen['inside'] = distributions.sampling_algorithm()
      worker = threading.Thread(
          target=lambda: seen.update(other=distributions.sampling_algorithm()))
      worker.start()
      worker.join()
      raise RuntimeError('leaves the context')
  assert seen == {'inside': 'threefry', 'other': 'philox'}
  assert distributions.sampling_algorithm() == 'philox'


@pytest.mark.parametrize('dtype,minval,maxval', [(tf.float32, 0.0, None),
                                                 (tf.float32, -2.0, 3.0),
                                                 (tf.int32, 0, 5)])
def test_uniform_uses_the_sampling_algorithm(dtype, minval, maxval):
  def draw():
    return distributions.uniform([4, 3], SEED, minval, maxval, dtype)

  np.testing.assert_array_equal(draw(), tf.random.stateless_uniform(
      [4, 3], SEED, minval, maxval, dtype, alg='philox'))

  def draw_in_xla():
    with distributions.xla_sampling():
      return draw()

  expected = tf.function(lambda: tf.random.stateless_uniform(
      [4, 3], SEED, minval, maxval, dtype, alg='threefry'),
                         jit_compile=True)()
  np.testing.assert_array_equal(
      tf.function(draw_in_xla, jit_compile=True)(), expected)


def test_uniform_integers_cover_their_range_evenly():
  x = distributions.uniform([60_000], SEED, 0, 6, tf.int32).numpy()
  counts = np.bincount(x, minlength=6)
  assert x.min() == 0 and x.max() == 5
  # Each count ~ Binomial(60000, 1/6): standard deviation 91.
  np.testing.assert_allclose(counts, 10_000, atol=400)
