"""Tests for the two-hot symlog regression (wm_tf/distributions.py,
wm_tf/components/heads.py) against NumPy references."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import SMALL_OVERRIDES
from test_symlog import np_symexp, np_symlog
from wm_tf.agent.builder import build_agent
from wm_tf.agent.symlog import SymlogHead
from wm_tf.components.heads import RewardHead, ValueHead
from wm_tf.config import ConfigError, load_config
from wm_tf.distributions import (TWOHOT_BINS, TWOHOT_LIMIT, TwoHotSymlog,
                                 twohot)


def np_twohot(y, low, high, count):
  """Loop reference: weights on the two grid points around clip(y)."""
  bins = np.linspace(low, high, count)
  out = np.zeros(y.shape + (count,))
  for i, value in np.ndenumerate(y):
    value = min(max(value, low), high)
    k = min(int(np.searchsorted(bins, value, side='right')) - 1, count - 2)
    w = (value - bins[k]) / (bins[k + 1] - bins[k])
    out[i + (k,)] += 1.0 - w
    out[i + (k + 1,)] += w
  return out


def np_log_softmax(logits):
  shifted = logits - logits.max(-1, keepdims=True)
  return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def test_twohot_matches_loop_and_keeps_position():
  rng = np.random.default_rng(0)
  y = np.concatenate([rng.uniform(-3.5, 3.5, 40), [-9.0, -3.0, 0.0, 3.0, 7.5],
                      np.linspace(-3, 3, 13)]).astype(np.float32)
  weights = twohot(y, -3.0, 3.0, 13).numpy()
  want = np_twohot(y.astype(np.float64), -3.0, 3.0, 13)
  np.testing.assert_allclose(weights, want, atol=1e-5)
  np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-6)
  assert np.all(weights >= 0) and np.all((weights > 0).sum(-1) <= 2)
  # The weighted grid is the clipped value.
  np.testing.assert_allclose(weights @ np.linspace(-3, 3, 13),
                             np.clip(y, -3, 3), atol=1e-5)


def test_twohot_on_a_grid_point_is_one_hot():
  weights = twohot(tf.constant([[-2.0, 0.5, 2.0]]), -2.0, 2.0, 9).numpy()
  np.testing.assert_allclose(weights[0, 0], np.eye(9)[0], atol=1e-6)
  np.testing.assert_allclose(weights[0, 1], np.eye(9)[5], atol=1e-6)
  np.testing.assert_allclose(weights[0, 2], np.eye(9)[8], atol=1e-6)


def test_twohot_symlog_log_prob_and_mean_match_numpy():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(3, 4, TWOHOT_BINS)).astype(np.float32)
  x = (rng.normal(size=(3, 4)) * 10.0 ** rng.integers(-2, 6, (3, 4)))
  x = x.astype(np.float32)
  dist = TwoHotSymlog(logits)
  target = np_twohot(np_symlog(x.astype(np.float64)), -TWOHOT_LIMIT,
                     TWOHOT_LIMIT, TWOHOT_BINS)
  want = np.sum(target * np_log_softmax(logits.astype(np.float64)), -1)
  np.testing.assert_allclose(dist.log_prob(x).numpy(), want, rtol=1e-5,
                             atol=1e-5)
  probs = np.exp(np_log_softmax(logits.astype(np.float64)))
  bins = np.linspace(-TWOHOT_LIMIT, TWOHOT_LIMIT, TWOHOT_BINS)
  np.testing.assert_allclose(dist.mean().numpy(), np_symexp(probs @ bins),
                             rtol=1e-4)
  np.testing.assert_allclose(dist.mode().numpy(), dist.mean().numpy())
  assert dist.bins_distribution.event_shape == []


def test_twohot_gradient_is_probs_minus_target_whatever_the_scale():
  """d(-log_prob)/d logits = softmax - twohot: bounded for targets of 1e6."""
  logits = tf.Variable(tf.zeros([2, TWOHOT_BINS]))
  x = tf.constant([1e6, -3.0])
  with tf.GradientTape() as tape:
    loss = -tf.reduce_sum(TwoHotSymlog(logits).log_prob(x))
  grad = tape.gradient(loss, logits).numpy()
  target = np_twohot(np_symlog(x.numpy().astype(np.float64)), -TWOHOT_LIMIT,
                     TWOHOT_LIMIT, TWOHOT_BINS)
  np.testing.assert_allclose(grad, 1.0 / TWOHOT_BINS - target, atol=1e-4)
  assert np.abs(grad).max() <= 1.0


def test_twohot_fits_a_target_of_large_scale():
  """A mean of -1600 (Pendulum's returns) is learned to within 1%."""
  keras.utils.set_random_seed(0)
  head = ValueHead(units=16, layers=1, distribution='twohot')
  states = tf.random.normal([32, 4])
  targets = -1600.0 + 10.0 * states[:, 0]
  optimizer = keras.optimizers.Adam(3e-2)
  head(states)
  optimizer.build(head.trainable_variables)

  @tf.function
  def step():
    with tf.GradientTape() as tape:
      loss = -tf.reduce_mean(head(states).log_prob(targets))
    grads = tape.gradient(loss, head.trainable_variables)
    optimizer.apply_gradients(zip(grads, head.trainable_variables))

  for _ in range(300):
    step()
  mean = head(states).mean().numpy()
  np.testing.assert_allclose(mean, targets.numpy(), rtol=0.01)


@pytest.mark.parametrize('head_class', [RewardHead, ValueHead])
def test_twohot_head_starts_at_zero_with_bins_outputs(head_class):
  head = head_class(units=8, layers=1, distribution='twohot')
  dist = head(tf.random.normal([5, 3]))
  assert isinstance(dist, TwoHotSymlog)
  assert dist.logits.shape == (5, TWOHOT_BINS)
  np.testing.assert_allclose(dist.mean().numpy(), 0.0, atol=1e-5)
  assert head.in_symlog_space
  assert not head_class(units=8, layers=1).in_symlog_space


def test_head_refuses_an_unknown_distribution():
  with pytest.raises(ValueError, match="'laplace'.*'normal', 'twohot'"):
    ValueHead(units=8, distribution='laplace')


def test_config_refuses_an_unknown_distribution():
  with pytest.raises(ConfigError) as info:
    load_config(None, ['critic.distribution=laplace'])
  assert 'critic.distribution' in str(info.value)
  assert 'twohot' in str(info.value)


def test_twohot_heads_are_built_and_symlog_does_not_wrap_them(cartpole_spec):
  """(Training with two-hot heads: tests/test_learner_alternatives.py.)"""
  agent = build_agent(load_config(None, list(SMALL_OVERRIDES) + [
      'critic.distribution=twohot', 'heads.reward.distribution=twohot',
      'imagination.symlog=true']), cartpole_spec)
  wm = agent.world_model
  for head in (wm.reward, agent.critic, agent.slow_critic):
    assert not isinstance(head, SymlogHead)
    assert head.distribution == 'twohot'
  assert wm.decoder.symlog  # symlog still applies to the decoded vectors
  assert isinstance(wm.reward(tf.zeros([2, 8])), TwoHotSymlog)
