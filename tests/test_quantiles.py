"""Tests for wm_tf/quantiles.py against NumPy's sort."""

import numpy as np
import pytest
import tensorflow as tf

from wm_tf.quantiles import order_statistics, percentiles


def _cases():
  rng = np.random.default_rng(0)
  yield rng.normal(size=1000) * 100.0
  yield rng.integers(-3, 4, size=500).astype(np.float64)  # many ties
  yield np.array([2.5])
  yield np.array([0.0, -0.0, 1e-38, -1e-38, 3e38, -3e38, 1e-45, -1e-45])
  yield np.concatenate([rng.uniform(-1e-30, 1e-30, 300),
                        rng.uniform(1e6, 1e7, 300), [np.inf, -np.inf]])
  yield -np.abs(rng.standard_cauchy(4096))


@pytest.mark.parametrize('jit', [False, True])
@pytest.mark.parametrize('case', list(range(6)))
def test_order_statistics_equal_numpy_sort(case, jit):
  x = list(_cases())[case].astype(np.float32)
  n = len(x)
  ranks = np.unique(np.concatenate([[0, n - 1, n // 2],
                                    np.arange(0, n, max(1, n // 17))]))
  fn = tf.function(order_statistics, jit_compile=jit)
  got = fn(tf.constant(x), tf.constant(ranks, tf.int32)).numpy()
  np.testing.assert_array_equal(got, np.sort(x)[ranks])


def test_percentiles_are_lower_nearest_rank():
  x = np.random.default_rng(1).normal(size=15360).astype(np.float32)
  got = percentiles(tf.constant(x.reshape(1024, 15)), (0.05, 0.95)).numpy()
  ordered = np.sort(x)
  want = [ordered[int(np.float32(0.05) * np.float32(15359))],
          ordered[int(np.float32(0.95) * np.float32(15359))]]
  np.testing.assert_array_equal(got, want)
