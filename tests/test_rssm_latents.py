"""Tests for wm_tf/components/rssm_latents.py: the RSSM's categorical latent.

Also the math it is made of (wm_tf.losses.kl_categorical,
wm_tf.distributions.unimix_logits and straight_through_one_hot). The
references are float64 NumPy computations from the raw logits.
"""

import contextlib
import math
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from wm_tf import distributions, losses
from wm_tf.agent.imagination import imagine
from wm_tf.components.actor import Actor
from wm_tf.components.rssm import RSSM
from wm_tf.components.rssm_latents import (CategoricalLatent,
                                           CategoricalStateDistribution)
from wm_tf.config import ConfigError, load_config
from world_model_training import (cartpole_like_batch, feature_sequence,
                                  small_world_model)

F, A, H = 16, 2, 12
G, K = 3, 5  # categoricals and classes of the small RSSM


def _seed(a=1, b=2):
  return tf.constant([a, b], tf.int32)


def _np_softmax(logits):
  e = np.exp(logits - logits.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _np_kl(q_logits, p_logits):
  """KL(q || p) per categorical [..., G], float64."""
  q = _np_softmax(np.asarray(q_logits, np.float64))
  p = _np_softmax(np.asarray(p_logits, np.float64))
  return np.sum(q * (np.log(q) - np.log(p)), -1)


def _logits(shape, seed, scale=2.0):
  return np.random.default_rng(seed).normal(size=shape) * scale


# ---------------------------------------------------------------------------
# The math.
# ---------------------------------------------------------------------------


def test_kl_categorical_matches_numpy():
  q, p = _logits((6, G, K), 0), _logits((6, G, K), 1)
  got = losses.kl_categorical(tf.constant(q, tf.float32),
                              tf.constant(p, tf.float32)).numpy()
  np.testing.assert_allclose(got, _np_kl(q, p), rtol=1e-5, atol=1e-6)
  assert got.shape == (6, G)


def test_latent_kl_terms_sum_the_groups_and_share_one_value():
  q, p = _logits((6, G, K), 2), _logits((6, G, K), 3)
  latent = CategoricalLatent(G, K, unimix=0.0)
  deter = tf.zeros((6, H))
  posterior = CategoricalStateDistribution(deter, tf.constant(q, tf.float32))
  prior = CategoricalStateDistribution(deter, tf.constant(p, tf.float32))
  prior_kl, posterior_kl = latent.kl_terms(posterior, prior)
  want = _np_kl(q, p).sum(-1)  # [6]
  np.testing.assert_allclose(prior_kl.numpy(), want, rtol=1e-5)
  np.testing.assert_allclose(posterior_kl.numpy(), want, rtol=1e-5)


def test_unimix_keeps_every_class_at_least_its_share():
  raw = np.array([[30.0, -40.0, 0.0, 5.0, -5.0],
                  [0.0, 0.0, 0.0, 0.0, 0.0],
                  [-80.0, 80.0, 1.0, 2.0, 3.0]])
  for mix in (0.01, 0.3):
    probs = tf.exp(distributions.unimix_logits(
        tf.constant(raw, tf.float32), mix)).numpy()
    want = (1 - mix) * _np_softmax(raw) + mix / K
    np.testing.assert_allclose(probs, want, rtol=1e-5, atol=1e-7)
    assert np.all(probs >= mix / K * (1 - 1e-5))
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-6)
  # No mix: the plain softmax (normalised logits).
  np.testing.assert_allclose(
      tf.exp(distributions.unimix_logits(tf.constant(raw, tf.float32), 0.0)),
      _np_softmax(raw), rtol=1e-5, atol=1e-12)


def test_straight_through_sample_is_one_hot_with_the_gradient_of_probs():
  logits = tf.Variable(_logits((4, G, K), 4), dtype=tf.float32)
  weights = tf.constant(_logits((4, G, K), 5), tf.float32)
  with tf.GradientTape(persistent=True) as tape:
    sample = distributions.straight_through_one_hot(logits, _seed())
    through_sample = tf.reduce_sum(tf.sin(weights * sample))
    # The same loss with the probs in place of the sample, whose gradient
    # the straight-through estimator hands on: d f / d sample evaluated at
    # the sample, times d probs / d logits.
    probs = tf.nn.softmax(logits, -1)
    outer = tf.stop_gradient(weights * tf.cos(weights * sample))
    through_probs = tf.reduce_sum(outer * probs)
  value = sample.numpy()
  np.testing.assert_array_equal(np.sort(value, -1)[..., :-1], 0.0)
  np.testing.assert_allclose(value.max(-1), 1.0, rtol=1e-6)
  np.testing.assert_allclose(tape.gradient(through_sample, logits),
                             tape.gradient(through_probs, logits),
                             rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize('xla', [False, True])
def test_straight_through_samples_follow_the_probabilities(xla):
  """Gumbel-max draws: class frequencies within 4.5 sigma of the probs."""
  n = 20000
  logits = tf.constant(np.tile([[0.5, -1.0, 2.0, 0.0, -3.0]], (n, 1)),
                       tf.float32)

  def draw():
    with distributions.xla_sampling() if xla else contextlib.nullcontext():
      return distributions.straight_through_one_hot(logits, _seed(3, 4))

  draws = (tf.function(draw, jit_compile=True)() if xla else draw()).numpy()
  p = _np_softmax(np.array([0.5, -1.0, 2.0, 0.0, -3.0]))
  sigma = np.sqrt(p * (1 - p) / n)
  assert np.all(np.abs(draws.mean(0) - p) < 4.5 * sigma), (draws.mean(0), p)


def test_free_bits_clip_each_step_and_scale_each_side():
  """kl_loss = dyn_scale mean max(f, KL(sg q||p)) + rep_scale mean max(f,
  KL(q||sg p)) over steps: a step under f gives no gradient to either side,
  one above gives dyn_scale (prior) or rep_scale (posterior) times the
  KL's gradient, over the number of steps."""
  q0, p0 = _logits((8, G, K), 6), _logits((8, G, K), 7)
  kl = _np_kl(q0, p0).sum(-1)  # [8]
  free = float(np.median(kl))
  below = kl < free
  assert 0 < below.sum() < 8
  rssm = types.SimpleNamespace(free_nats=free, dyn_scale=0.5, rep_scale=0.1)
  latent = CategoricalLatent(G, K, unimix=0.0)
  q, p = (tf.Variable(x, dtype=tf.float32) for x in (q0, p0))
  deter = tf.zeros((8, H))
  with tf.GradientTape(persistent=True) as tape:
    prior_kl, posterior_kl = latent.kl_terms(
        CategoricalStateDistribution(deter, q),
        CategoricalStateDistribution(deter, p))
    # [B, T] = [2, 4]: the clip is per step, the mean over all 8.
    loss, metrics = latent.kl_loss(rssm, tf.reshape(prior_kl, [2, 4]),
                                   tf.reshape(posterior_kl, [2, 4]))
    plain_kl = tf.reduce_sum(losses.kl_categorical(q, p), -1)
  np.testing.assert_allclose(
      float(loss), 0.6 * np.maximum(kl, free).mean(), rtol=1e-5)
  np.testing.assert_allclose(float(metrics['rssm_dyn_loss']),
                             np.maximum(kl, free).mean(), rtol=1e-5)
  grad_q, grad_p = tape.gradient(loss, [q, p])
  ref_q, ref_p = tape.gradient(plain_kl, [q, p],
                               output_gradients=tf.ones(8) / 8.0)
  np.testing.assert_array_equal(grad_q.numpy()[below], 0.0)
  np.testing.assert_array_equal(grad_p.numpy()[below], 0.0)
  above = ~below
  np.testing.assert_allclose(grad_q.numpy()[above],
                             0.1 * ref_q.numpy()[above], rtol=1e-4, atol=1e-8)
  np.testing.assert_allclose(grad_p.numpy()[above],
                             0.5 * ref_p.numpy()[above], rtol=1e-4, atol=1e-8)


# ---------------------------------------------------------------------------
# The categorical RSSM.
# ---------------------------------------------------------------------------


def _rssm(**kwargs):
  options = dict(latent_dim=G, classes=K, deter_dim=H, action_dim=A, units=32,
                 layers=1, latent='categorical', free_nats=0.0, beta=None)
  options.update(kwargs)
  return RSSM(**options)


def _sequence(batch=3, length=6):
  features, action, is_first = feature_sequence(batch, length, 0, F, A)
  return features, action, tf.constant(is_first)


def _one_hot_groups(z):
  """z [..., G * K] is G one-hot vectors."""
  z = np.asarray(z).reshape(z.shape[:-1] + (G, K))
  np.testing.assert_allclose(z.sum(-1), 1.0, rtol=1e-6)
  np.testing.assert_allclose(z.max(-1), 1.0, rtol=1e-6)


def test_categorical_state_is_deter_and_one_hot_groups():
  rssm = _rssm()
  assert rssm.latent_dim == H + G * K
  features, action, is_first = _sequence()
  states, loss, metrics = rssm.observe_sequence(features, action, is_first,
                                                seed=_seed())
  assert states.shape == (3, 6, H + G * K)
  _one_hot_groups(states.numpy()[..., H:])
  assert np.isfinite(float(loss))
  assert {'rssm_kl', 'rssm_kl_loss', 'rssm_dyn_loss', 'rssm_rep_loss',
          'rssm_posterior_entropy', 'rssm_prior_entropy'} <= set(metrics)
  prior = rssm.prior_step(states[:, 0], action[:, 0])
  assert prior.batch_shape == (3,) and prior.event_shape == (H + G * K,)
  mean, std = prior.mean().numpy(), prior.stddev().numpy()
  # The prior's h is the GRU step the posterior took: the h of step 1.
  np.testing.assert_allclose(mean[:, :H], states.numpy()[:, 1, :H],
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(std[:, :H], 0.0)
  probs = mean[:, H:].reshape(3, G, K)
  np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
  assert np.all(probs >= 0.01 / K * (1 - 1e-4))  # the default unimix
  np.testing.assert_allclose(std[:, H:], np.sqrt(
      mean[:, H:] * (1 - mean[:, H:])), rtol=1e-5)
  mode = prior.mode().numpy()[:, H:]
  _one_hot_groups(mode)
  np.testing.assert_array_equal(mode.reshape(3, G, K).argmax(-1),
                                probs.argmax(-1))
  # log_prob of the mode: the sum over groups of its log probabilities.
  np.testing.assert_allclose(prior.log_prob(prior.mode()).numpy(),
                             np.log(probs.max(-1)).sum(-1), rtol=1e-5)


def test_categorical_kl_metric_matches_numpy_from_the_logits():
  rssm = _rssm()
  features, action, is_first = _sequence(batch=4, length=1)
  _, posterior, prior = rssm.observe_step(
      rssm.initial_state(4), tf.zeros((4, A)), features[:, 0], tf.ones(4))
  kl = _np_kl(posterior.logits.numpy(), prior.logits.numpy()).sum(-1)
  _, loss, metrics = rssm.observe_sequence(features, action, is_first,
                                           seed=_seed())
  np.testing.assert_allclose(float(metrics['rssm_kl']), kl.mean(), rtol=1e-4)
  np.testing.assert_allclose(float(loss), 0.6 * kl.mean(), rtol=1e-4)


@pytest.mark.parametrize('sample', [True, False])
def test_categorical_prior_drives_imagination(sample):
  rssm = _rssm()
  actor = Actor(A, discrete=True, units=32, layers=1)
  features, action, is_first = _sequence()
  states = rssm.observe_sequence(features, action, is_first, seed=_seed())[0]
  start = tf.reshape(states, [-1, rssm.latent_dim])
  with tf.GradientTape() as tape:
    traj = imagine(rssm.own_dynamics(), actor, start, horizon=3,
                   seed=_seed(), sample_dynamics=sample)
    objective = tf.reduce_sum(tf.sin(traj['states'][:, 1:]))
  assert traj['states'].shape == (18, 4, rssm.latent_dim)
  z = traj['states'].numpy()[:, 1:, H:]
  if sample:
    _one_hot_groups(z)
  else:  # the mean: class probabilities
    np.testing.assert_allclose(z.reshape(18, 3, G, K).sum(-1), 1.0,
                               rtol=1e-5)
  grads = tape.gradient(objective, actor.trainable_variables)
  assert any(g is not None and float(tf.reduce_max(tf.abs(g))) > 0
             for g in grads)


def test_categorical_observe_sequence_compiles_with_xla():
  rssm = _rssm()
  features, action, is_first = _sequence()
  eager = rssm.observe_sequence(features, action, is_first, seed=_seed())

  @tf.function(jit_compile=True)
  def compiled():
    with distributions.xla_sampling():
      return rssm.observe_sequence(features, action, is_first, seed=_seed())

  states, loss, _ = compiled()
  _one_hot_groups(states.numpy()[..., H:])
  # Another noise algorithm, so other draws; the deterministic path of the
  # first step (from the zero state) is the same.
  np.testing.assert_allclose(states.numpy()[:, 0, :H],
                             eager[0].numpy()[:, 0, :H], rtol=1e-5, atol=1e-6)
  assert np.isfinite(float(loss))


def test_world_model_with_categorical_rssm_trains_on_cartpole():
  """300 compiled Adam steps on CartPole sequences: every loss stays finite
  and the reward NLL falls. (Without XLA, which is slow to compile this
  step: test_categorical_observe_sequence_compiles_with_xla compiles the
  sequence.)"""
  world_model = small_world_model([
      'representation_learner.type=rssm',
      'representation_learner.latent=categorical',
      'representation_learner.classes=8',
      'representation_learner.deter_dim=16'])
  assert world_model.latent_dim == 16 + 8 * 8
  batch = cartpole_like_batch(batch_size=8, length=16)
  eval_seed = tf.constant([5, 6], tf.int32)
  before = world_model.world_model_loss(batch, seed=eval_seed)[2]
  optimizer = keras.optimizers.Adam(1e-3)
  variables = world_model.trainable_variables
  optimizer.build(variables)

  @tf.function(autograph=False)
  def train():
    with tf.GradientTape() as tape:
      loss, _, metrics = world_model.world_model_loss(batch)
    grads = tape.gradient(loss, variables)
    optimizer.apply_gradients(
        [(tf.zeros_like(v) if g is None else g, v)
         for g, v in zip(grads, variables)])
    return metrics

  history = [train() for _ in range(300)]
  after = world_model.world_model_loss(batch, seed=eval_seed)[2]
  for metrics in history[::50] + [before, after]:
    assert all(math.isfinite(float(v)) for v in metrics.values()), metrics
  reward = lambda m: float(m['world_model/reward_nll'])
  assert reward(after) < reward(before) - 0.3, (reward(before), reward(after))
  assert float(after['world_model/rssm_kl']) >= 0.0


# ---------------------------------------------------------------------------
# Config rules.
# ---------------------------------------------------------------------------


def test_config_builds_the_categorical_rssm_with_its_weights():
  world_model = small_world_model([
      'representation_learner.type=rssm',
      'representation_learner.latent=categorical',
      'representation_learner.dyn_scale=0.7',
      'representation_learner.rep_scale=0.2',
      'representation_learner.unimix=0.05'])
  rssm = world_model.representation
  assert (rssm.latent, rssm.dyn_scale, rssm.rep_scale, rssm.unimix,
          rssm.beta) == ('categorical', 0.7, 0.2, 0.05, None)
  assert rssm.latent_dim == 64 + 8 * 32  # latent_dim 8 categoricals of 32


@pytest.mark.parametrize('overrides, match', [
    (['representation_learner.type=mlp',
      'representation_learner.latent=categorical'],
     r"latent='categorical' and representation_learner.type='mlp' "
     'conflict'),
    (['representation_learner.type=rssm',
      'representation_learner.latent=categorical',
      'representation_learner.kl_balance=0.5'],
     r"latent='categorical' and representation_learner.kl_balance=0.5 "
     r'conflict: the categorical latent weighs its KL by dyn_scale and '
     r'rep_scale'),
    (['representation_learner.type=rssm',
      'representation_learner.latent=categorical',
      'representation_learner.beta=1.0'],
     r'representation_learner.beta=1.0 conflict'),
    (['representation_learner.type=rssm',
      'representation_learner.dyn_scale=0.3'],
     r"latent='gaussian' and representation_learner.dyn_scale=0.3 conflict: "
     'the gaussian latent weighs its KL by beta and kl_balance'),
    (['representation_learner.type=rssm',
      'representation_learner.latent=categorical',
      'representation_learner.unimix=1.0'],
     r"'representation_learner.unimix' has value 1.0; allowed: a number in "
     r'\[0, 1\)'),
    (['representation_learner.classes=1'],
     r"'representation_learner.classes' has value 1; allowed: an integer "
     '>= 2'),
    (['representation_learner.latent=binary'], 'binary'),
])
def test_config_refuses_mixed_kl_weights_and_bad_values(overrides, match):
  with pytest.raises(ConfigError, match=match):
    load_config(None, overrides)


def test_saved_config_of_either_latent_loads_again():
  from wm_tf.config import from_dict, to_dict
  for latent in ('gaussian', 'categorical'):
    config = load_config(None, ['representation_learner.type=rssm',
                                f'representation_learner.latent={latent}'])
    again = from_dict(to_dict(config))
    assert again == config


@pytest.mark.parametrize('latent, jit', [('gaussian', False),
                                         ('categorical', True)])
def test_loop_equals_unrolled_sequence(latent, jit):
  """`unroll=False` (a tf.while_loop) computes what the written-out steps
  compute: states, loss, metrics and gradients, with sampling and resets."""
  extra = (dict(latent='gaussian', latent_dim=4, beta=1.0, free_nats=0.5)
           if latent == 'gaussian' else {})
  unrolled = _rssm(**extra)
  looped = _rssm(unroll=False, **extra)
  features, action, is_first = _sequence(batch=3, length=7)
  for model in (unrolled, looped):
    model.observe_sequence(features, action, is_first, seed=_seed())
  looped.set_weights(unrolled.get_weights())

  def run(model):
    with tf.GradientTape() as tape:
      states, loss, metrics = model.observe_sequence(
          features, action, is_first, seed=_seed())
      objective = loss + tf.reduce_sum(tf.sin(states))
    return (states, loss, metrics,
            tape.gradient(objective, model.trainable_variables))

  if jit:
    run = tf.function(run, jit_compile=True)
  expected, actual = run(unrolled), run(looped)
  assert actual[0].shape == (3, 7, unrolled.latent_dim)
  np.testing.assert_allclose(actual[0].numpy(), expected[0].numpy(),
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(float(actual[1]), float(expected[1]), rtol=1e-5)
  assert set(actual[2]) == set(expected[2])
  for name in expected[2]:
    np.testing.assert_allclose(float(actual[2][name]),
                               float(expected[2][name]), rtol=1e-5,
                               atol=1e-7, err_msg=name)
  for got, want in zip(actual[3], expected[3]):
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4,
                               atol=1e-6)
  assert looped.get_config()['unroll'] is False
