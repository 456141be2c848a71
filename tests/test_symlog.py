"""Tests for symlog/symexp (wm_tf/distributions.py) and the symlog-space
wrappers of wm_tf/agent/symlog.py, against NumPy."""

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from conftest import SMALL_OVERRIDES, make_batch
from wm_tf.agent.builder import build_agent
from wm_tf.agent.symlog import SymlogDistribution, SymlogHead, SymlogInputs
from wm_tf.config import load_config
from wm_tf.distributions import symexp, symlog

tfd = tfp.distributions

WIDE = np.array([-1e6, -123.4, -1.0, -0.5, -1e-6, 0.0, 1e-6, 0.25, 1.0, 7.0,
                 1e4, 3e7], np.float32)


def np_symlog(x):
  return np.sign(x) * np.log1p(np.abs(x))


def np_symexp(y):
  return np.sign(y) * np.expm1(np.abs(y))


def test_symlog_and_symexp_match_numpy():
  np.testing.assert_allclose(symlog(tf.constant(WIDE)).numpy(),
                             np_symlog(WIDE.astype(np.float64)), rtol=1e-6)
  y = np.linspace(-15, 15, 61).astype(np.float32)
  np.testing.assert_allclose(symexp(tf.constant(y)).numpy(),
                             np_symexp(y.astype(np.float64)), rtol=1e-5)


def test_symlog_and_symexp_invert_each_other():
  np.testing.assert_allclose(symexp(symlog(tf.constant(WIDE))).numpy(), WIDE,
                             rtol=1e-5)
  y = np.linspace(-15, 15, 61).astype(np.float32)
  np.testing.assert_allclose(symlog(symexp(tf.constant(y))).numpy(), y,
                             rtol=1e-5, atol=1e-6)
  # Odd, zero at zero, slope 1 / (1 + |x|).
  assert symlog(tf.constant(0.0)).numpy() == 0.0
  np.testing.assert_allclose(symlog(tf.constant(-WIDE)).numpy(),
                             -symlog(tf.constant(WIDE)).numpy())
  x = tf.constant([-2.0, -1e-3, 1e-3, 3.0])
  with tf.GradientTape() as tape:
    tape.watch(x)
    out = symlog(x)
  np.testing.assert_allclose(tape.gradient(out, x).numpy(),
                             1.0 / (1.0 + np.abs(x.numpy())), rtol=1e-6)


def test_symlog_distribution_scores_and_reads_in_symlog_space():
  mean = np.array([-3.0, 0.0, 2.5], np.float32)
  dist = SymlogDistribution(tfd.Normal(mean, 1.0))
  x = np.array([-50.0, 0.3, 11.0], np.float32)
  want = -0.5 * (np_symlog(x) - mean) ** 2 - 0.5 * np.log(2 * np.pi)
  np.testing.assert_allclose(dist.log_prob(x).numpy(), want, rtol=1e-5)
  np.testing.assert_allclose(dist.mean().numpy(), np_symexp(mean), rtol=1e-5)
  np.testing.assert_allclose(dist.mode().numpy(), np_symexp(mean), rtol=1e-5)


def test_symlog_agent_wraps_encoder_heads_and_critics(cartpole_spec):
  keras.utils.set_random_seed(0)
  agent = build_agent(load_config(
      None, list(SMALL_OVERRIDES) + ['imagination.symlog=true']),
      cartpole_spec)
  wm = agent.world_model
  # The vector branch of the multi-key encoder and decoder.
  assert isinstance(wm.encoder.mlp, SymlogInputs) and wm.decoder.symlog
  for head in (wm.reward, agent.critic, agent.slow_critic):
    assert isinstance(head, SymlogHead)
  assert not isinstance(wm.continue_, SymlogHead)  # a probability

  obs = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32) * 100
  np.testing.assert_allclose(wm.encoder({'observation': obs}).numpy(),
                             wm.encoder.mlp.inner(np_symlog(obs)).numpy(),
                             rtol=1e-5, atol=1e-6)
  latent = wm.encode({'observation': obs})
  decoded = wm.decoder(latent)['observation']
  mean = wm.decoder.mlp(latent).mean().numpy()
  np.testing.assert_allclose(decoded.mean().numpy(), np_symexp(mean),
                             rtol=1e-5, atol=1e-5)
  want = (-0.5 * (np_symlog(obs) - mean) ** 2).sum(-1) - 2 * np.log(2 * np.pi)
  np.testing.assert_allclose(decoded.log_prob(obs).numpy(), want, rtol=1e-4)

  # The reward head is trained on symlog(reward) and read out with symexp.
  out = wm.reward.inner.out
  out.kernel.assign(np.random.default_rng(1).normal(
      size=out.kernel.shape).astype(np.float32))
  batch = make_batch(cartpole_spec, np.random.default_rng(2))
  latent = wm.world_model_loss(batch)[1]
  raw = wm.reward.inner(latent).mean().numpy()
  reward = batch['reward'].numpy() * 30
  want = -0.5 * (np_symlog(reward) - raw) ** 2 - 0.5 * np.log(2 * np.pi)
  np.testing.assert_allclose(wm.reward(latent).log_prob(reward).numpy(), want,
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(wm.reward(latent).mean().numpy(),
                             np_symexp(raw), rtol=1e-5, atol=1e-6)
