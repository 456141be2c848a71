"""Tests for wm_tf/losses.py helpers of named loss terms."""

import numpy as np
import pytest
import tensorflow as tf

from wm_tf import losses


def test_weighted_total_is_the_scaled_sum():
  terms = {'a': tf.constant(2.0), 'b': tf.constant(-3.0),
           'c': tf.constant(0.5)}
  got = losses.weighted_total(terms, {'a': 0.5, 'b': 2.0, 'c': 4.0})
  np.testing.assert_allclose(float(got), 0.5 * 2 + 2 * -3 + 4 * 0.5)


def test_check_loss_scales_names_the_key_and_the_allowed_terms():
  losses.check_loss_scales('x.loss_scales', {'a': 1.0, 'b': 0.0}, ('a', 'b'))
  with pytest.raises(losses.LossScaleError,
                     match=r'^x.loss_scales.b is missing: .*allowed: a, b.$'):
    losses.check_loss_scales('x.loss_scales', {'a': 1.0}, ('a', 'b'))
  with pytest.raises(losses.LossScaleError,
                     match=r'^x.loss_scales.c is not a loss term; allowed: '
                     r'a, b.$'):
    losses.check_loss_scales('x.loss_scales', {'a': 1.0, 'b': 1.0, 'c': 1.0},
                             ('a', 'b'))
