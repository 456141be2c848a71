"""Tests for wm_tf/components/representation.py and rssm.py.

References are float64 NumPy computations from the learners' raw outputs
(means, stds, projections, codes), never the TFP methods under test.
"""

import inspect
import math

import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml

from wm_tf import losses
from wm_tf.agent.imagination import imagine
from wm_tf.components.actor import Actor
from wm_tf.components.representation import (REPRESENTATIONS,
                                             ContrastiveRepresentation,
                                             IdentityRepresentation,
                                             MLPAutoencoder, MLPBottleneck,
                                             VAERepresentation,
                                             VQRepresentation)
from wm_tf.components.rssm import RSSM, RSSMPriorDynamics
from wm_tf.config import ConfigError, load_config
from world_model_training import (cartpole_like_batch, feature_sequence,
                                  small_world_model, train_world_model)

F, D, A = 16, 8, 2
SMALL = dict(units=32, layers=1)


def _features(batch_shape, seed=0, scale=1.0):
  rng = np.random.default_rng(seed)
  return tf.constant(scale * rng.normal(size=batch_shape + (F,)), tf.float32)


def _seed(a=1, b=2):
  return tf.constant([a, b], tf.int32)


def _softmax_cross_entropy_diag(logits):
  logits = logits - logits.max(1, keepdims=True)
  log_softmax = logits - np.log(np.exp(logits).sum(1, keepdims=True))
  return -np.diag(log_softmax)


ALL_TYPES = ['mlp', 'none', 'mlp_autoencoder', 'vae', 'contrastive', 'vq',
             'rssm']


def _make(kind, **kwargs):
  options = dict(latent_dim=D, feature_dim=F, action_dim=A, **SMALL)
  options.update(kwargs)
  cls = REPRESENTATIONS.get(kind)
  accepted = inspect.signature(cls).parameters
  return cls(**{k: v for k, v in options.items() if k in accepted})


def test_registry_has_every_type():
  assert set(ALL_TYPES) <= set(REPRESENTATIONS.names())
  assert REPRESENTATIONS.get('rssm') is RSSM


# ---------------------------------------------------------------------------
# Shapes of the common API.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('kind', ALL_TYPES)
def test_shapes_of_call_and_observe_sequence(kind):
  rep = _make(kind)
  state_size = {'none': F, 'rssm': 64 + D}.get(kind, D)
  assert rep.latent_dim == state_size
  dist = rep(_features((4, 8)))
  assert dist.batch_shape == (4, 8)
  assert dist.event_shape == (state_size,)
  assert dist.mode().shape == (4, 8, state_size)

  features = _features((4, 8), seed=1)
  action = tf.one_hot(np.random.default_rng(2).integers(0, A, (4, 8)), A)
  is_first = np.zeros((4, 8), np.float32)
  is_first[:, 0] = 1.0
  is_first[2, 5] = 1.0
  latent, loss, metrics = rep.observe_sequence(
      features, action, tf.constant(is_first), seed=_seed())
  assert latent.shape == (4, 8, state_size)
  assert loss.shape == ()
  assert np.isfinite(float(loss))
  assert all(np.isfinite(float(v)) for v in metrics.values())

  state = rep.initial_state(3)
  assert state.shape == (3, state_size)
  state, posterior, _ = rep.observe_step(
      state, tf.zeros((3, A)), _features((3,)), tf.ones(3))
  assert state.shape == (3, state_size)


# ---------------------------------------------------------------------------
# none and mlp_autoencoder.
# ---------------------------------------------------------------------------


def test_none_latent_is_the_features():
  rep = _make('none')
  assert isinstance(rep, IdentityRepresentation)
  features = _features((3, 5))
  np.testing.assert_array_equal(rep(features).mode().numpy(),
                                features.numpy())
  # The small config sets latent_dim=8, encoder.units=32: a conflict.
  with pytest.raises(ConfigError, match='encoder.units=32'):
    small_world_model(['representation_learner.type=none'])
  world_model = small_world_model(['representation_learner.type=none',
                                   'representation_learner.latent_dim=32'])
  assert world_model.latent_dim == 32
  assert world_model.dynamics.latent_dim == 32
  # Not given at all, latent_dim is not checked (and not used).
  config = load_config(None, ['representation_learner.type=none'])
  assert config.representation_learner.latent_dim == 64


def test_autoencoder_reconstruction_loss_matches_numpy():
  rep = _make('mlp_autoencoder', aux_scale=0.5)
  assert isinstance(rep, MLPAutoencoder)
  features = _features((3, 5))
  dist = rep(features)
  loss, metrics = rep.auxiliary_loss(features, dist)
  reconstruction = rep.reconstruct(dist.mode()).numpy().astype(np.float64)
  assert reconstruction.shape == (3, 5, F)
  mse = np.mean((reconstruction - features.numpy()) ** 2)
  np.testing.assert_allclose(float(metrics['reconstruction_mse']), mse,
                             rtol=1e-5)
  np.testing.assert_allclose(float(loss), 0.5 * mse, rtol=1e-5)


def test_autoencoder_target_is_stop_gradient_features():
  """The loss reaches the features only through the latent."""
  rep = _make('mlp_autoencoder')
  features = _features((3, 5))
  with tf.GradientTape(persistent=True) as tape:
    tape.watch(features)
    loss = rep.auxiliary_loss(features, rep(features))[0]
    constant = tf.constant(features.numpy())
    reference = tf.reduce_mean(tf.square(
        rep.reconstruct(rep(features).mode()) - constant))
  np.testing.assert_allclose(tape.gradient(loss, features).numpy(),
                             tape.gradient(reference, features).numpy(),
                             rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------------------
# VAE.
# ---------------------------------------------------------------------------


def test_vae_kl_matches_closed_form():
  rep = _make('vae', beta=0.3)
  assert isinstance(rep, VAERepresentation)
  features = _features((4, 6), scale=3.0)
  dist = rep(features)
  mean = dist.mean().numpy().astype(np.float64)
  std = dist.stddev().numpy().astype(np.float64)
  assert np.all(std > 0)
  # KL(N(m, s^2) || N(0, 1)) = sum_d (s^2 + m^2 - 1) / 2 - log s.
  kl = np.sum(0.5 * (std ** 2 + mean ** 2 - 1.0) - np.log(std), -1)
  loss, metrics = rep.auxiliary_loss(features, dist)
  np.testing.assert_allclose(float(metrics['vae_kl']), kl.mean(), rtol=1e-4)
  np.testing.assert_allclose(float(loss), 0.3 * kl.mean(), rtol=1e-4)
  np.testing.assert_allclose(
      losses.kl_normal_to_standard(dist.mean(), dist.stddev()).numpy(), kl,
      rtol=1e-4, atol=1e-5)


def test_vae_trains_on_reparameterised_samples():
  rep = _make('vae')
  features = _features((4, 6))
  action = tf.zeros((4, 6, A))
  is_first = tf.zeros((4, 6))
  with tf.GradientTape() as tape:
    latent = rep.observe_sequence(features, action, is_first, seed=_seed())[0]
    objective = tf.reduce_sum(latent ** 2)
  mode = rep(features).mode().numpy()
  assert np.max(np.abs(latent.numpy() - mode)) > 1e-3  # a sample, not mode
  again = rep.observe_sequence(features, action, is_first, seed=_seed())[0]
  np.testing.assert_array_equal(latent.numpy(), again.numpy())
  grads = tape.gradient(objective, [rep.mean.kernel, rep.std.kernel])
  assert all(float(tf.reduce_max(tf.abs(g))) > 0 for g in grads)
  np.testing.assert_array_equal(rep.observe_step(None, None, features,
                                                 None)[0].numpy(), mode)
  # Without a seed the sequence's latents are the modes.
  unseeded = rep.observe_sequence(features, action, is_first)[0]
  np.testing.assert_array_equal(unseeded.numpy(), mode)


# ---------------------------------------------------------------------------
# Contrastive.
# ---------------------------------------------------------------------------


def _info_nce_numpy(query, key, temperature):
  query = query / np.linalg.norm(query, axis=1, keepdims=True)
  key = key / np.linalg.norm(key, axis=1, keepdims=True)
  return np.mean(_softmax_cross_entropy_diag(query @ key.T / temperature))


def test_info_nce_function_matches_numpy_on_valid_rows():
  rng = np.random.default_rng(3)
  query = rng.normal(size=(6, 4))
  key = rng.normal(size=(6, 4))
  mask = np.array([1, 1, 0, 1, 0, 1], np.float32)
  valid = mask == 1
  got = losses.info_nce(tf.constant(query, tf.float32),
                        tf.constant(key, tf.float32), tf.constant(mask), 0.2)
  np.testing.assert_allclose(
      float(got), _info_nce_numpy(query[valid], key[valid], 0.2), rtol=1e-5)
  # Perfectly aligned, well separated pairs: loss near 0.
  eye = np.eye(4)
  assert float(losses.info_nce(tf.constant(eye, tf.float32),
                               tf.constant(eye, tf.float32), tf.ones(4),
                               0.01)) < 1e-6


def test_contrastive_loss_is_info_nce_of_next_latents():
  rep = _make('contrastive', temperature=0.5, projection_dim=6, aux_scale=2.0)
  assert isinstance(rep, ContrastiveRepresentation)
  features = _features((2, 4))
  is_first = np.zeros((2, 4), np.float32)
  is_first[:, 0] = 1.0
  is_first[1, 2] = 1.0  # transition (1, 1) -> (1, 2) is not real
  dist = rep(features)
  loss, metrics = rep.auxiliary_loss(features, dist,
                                     is_first=tf.constant(is_first))
  latent = dist.mode()
  query = rep.query(rep.query_mlp(latent[:, :-1])).numpy().reshape(6, 6)
  key = rep.key(latent[:, 1:]).numpy().reshape(6, 6)
  valid = (1.0 - is_first[:, 1:]).reshape(-1) == 1
  assert valid.sum() == 5
  expected = _info_nce_numpy(query[valid].astype(np.float64),
                             key[valid].astype(np.float64), 0.5)
  np.testing.assert_allclose(float(metrics['info_nce']), expected, rtol=1e-4)
  np.testing.assert_allclose(float(loss), 2.0 * expected, rtol=1e-4)


# ---------------------------------------------------------------------------
# VQ.
# ---------------------------------------------------------------------------


def _nearest_codes_reference(z_e, codebook):
  """NumPy: per group g, the codebook[g] row nearest z_e's g-th slice.

  z_e [N, D], codebook [G, K, C] with D = G * C -> (index [N, G], code [N, D]).
  """
  groups, _, width = codebook.shape
  index = np.zeros((z_e.shape[0], groups), np.int64)
  code = np.zeros_like(z_e)
  for g in range(groups):
    part = z_e[:, g * width:(g + 1) * width]
    distance = np.sum((part[:, None, :] - codebook[g][None]) ** 2, -1)
    index[:, g] = np.argmin(distance, -1)
    code[:, g * width:(g + 1) * width] = codebook[g][index[:, g]]
  return index, code


@pytest.mark.parametrize('groups', [1, 2, 8])
def test_vq_latent_is_nearest_code_of_each_group(groups):
  rep = _make('vq', codebook_size=16, codebook_groups=groups)
  assert isinstance(rep, VQRepresentation)
  features = _features((5, 3))
  latent = rep(features).mode().numpy()
  z_e = rep.encode_continuous(features).numpy().astype(np.float64)
  codebook = rep.codebook.numpy().astype(np.float64)
  assert codebook.shape == (groups, 16, D // groups)
  index, code = _nearest_codes_reference(z_e.reshape(-1, D), codebook)
  np.testing.assert_allclose(latent.reshape(-1, D), code, atol=1e-6)
  got_index, _ = rep.nearest_code(rep.encode_continuous(features))
  np.testing.assert_array_equal(got_index.numpy().reshape(-1, groups), index)


def test_vq_groups_must_divide_the_latent():
  # The config's rule (the component trusts its arguments).
  with pytest.raises(ConfigError, match='codebook_groups=3'):
    load_config(None, ['representation_learner.type=vq',
                       f'representation_learner.latent_dim={D}',
                       'representation_learner.codebook_groups=3'])


def test_vq_gradient_passes_straight_through():
  """d f(z_q) / d z_e = d f / d z_q, and it reaches the encoder weights."""
  rep = _make('vq', codebook_size=16, codebook_groups=2)
  features = _features((5, 3))
  weights = tf.constant(np.random.default_rng(4).normal(size=D), tf.float32)
  f = lambda z: tf.reduce_sum(tf.sin(3.0 * z) * weights)
  variables = rep.mlp.trainable_variables + rep.pre.trainable_variables
  with tf.GradientTape(persistent=True) as tape:
    tape.watch(features)
    z_e = rep.encode_continuous(features)
    _, code = rep.nearest_code(z_e)
    z_q = rep.straight_through(z_e, code)
    through_module = f(rep(features).mode())
    value = f(z_q)
  grad_e, grad_q = tape.gradient(value, [z_e, z_q])
  np.testing.assert_allclose(grad_e.numpy(), grad_q.numpy(), rtol=1e-6)
  # The same through `call`: the features' gradient is J_e^T (df/dz at z_q).
  z_q_const = tf.constant(z_q.numpy())
  with tf.GradientTape() as inner:
    inner.watch(z_q_const)
    df = inner.gradient(f(z_q_const), z_q_const)
  with tf.GradientTape() as tape2:
    tape2.watch(features)
    pulled = tf.reduce_sum(tf.stop_gradient(df) *
                           rep.encode_continuous(features))
  np.testing.assert_allclose(tape.gradient(through_module, features).numpy(),
                             tape2.gradient(pulled, features).numpy(),
                             rtol=1e-4, atol=1e-6)
  grads = tape.gradient(through_module, variables)
  assert all(g is not None and float(tf.reduce_max(tf.abs(g))) > 0
             for g in grads)


@pytest.mark.parametrize('groups', [1, 4])
def test_vq_codebook_is_used_and_moves_when_trained(groups):
  rep = _make('vq', codebook_size=32, codebook_groups=groups, commitment=0.25)
  features = _features((64,), seed=5, scale=2.0)  # varied inputs
  rep(features)
  codebook_before = rep.codebook.numpy().copy()
  optimizer = keras.optimizers.Adam(1e-2)
  for _ in range(30):
    with tf.GradientTape() as tape:
      loss, metrics = rep.auxiliary_loss(features, rep(features))
    grads = tape.gradient(loss, rep.trainable_variables)
    optimizer.apply_gradients(zip(grads, rep.trainable_variables))
  _, metrics = rep.auxiliary_loss(features, rep(features))
  assert float(metrics['vq_codes_used']) > 1
  assert float(metrics['vq_perplexity']) > 1.5
  moved = np.linalg.norm(rep.codebook.numpy() - codebook_before, axis=-1)
  assert np.all(np.sum(moved > 1e-3, axis=-1) >= 2)  # in every group
  # Loss terms and metrics against NumPy: perplexity is exp of the entropy
  # of each group's code frequencies, averaged over the groups.
  z_e = rep.encode_continuous(features).numpy().astype(np.float64)
  index, code = _nearest_codes_reference(z_e,
                                         rep.codebook.numpy().astype(np.float64))
  mse = np.mean((z_e - code) ** 2)
  np.testing.assert_allclose(float(metrics['vq_codebook_loss']), mse,
                             rtol=1e-4)
  np.testing.assert_allclose(float(metrics['vq_commitment_loss']), mse,
                             rtol=1e-4)
  perplexities, used = [], []
  for g in range(groups):
    frequency = np.bincount(index[:, g], minlength=32) / 64.0
    nonzero = frequency[frequency > 0]
    perplexities.append(math.exp(-np.sum(nonzero * np.log(nonzero))))
    used.append(np.sum(frequency > 0))
  np.testing.assert_allclose(float(metrics['vq_perplexity']),
                             np.mean(perplexities), rtol=1e-4)
  np.testing.assert_allclose(float(metrics['vq_codes_used']), np.mean(used),
                             rtol=1e-6)


def test_vq_groups_give_more_distinct_latents_than_one_codebook():
  """K codes in one group allow K latents; K per group in G groups, K^G."""
  features = _features((256,), seed=6, scale=2.0)
  distinct = {}
  for groups in (1, 4):
    keras.utils.set_random_seed(0)
    rep = _make('vq', codebook_size=4, codebook_groups=groups)
    index, _ = rep.nearest_code(rep.encode_continuous(features))
    distinct[groups] = len(np.unique(index.numpy(), axis=0))
  assert distinct[1] <= 4
  assert distinct[4] > 4


# ---------------------------------------------------------------------------
# RSSM.
# ---------------------------------------------------------------------------


def _rssm(**kwargs):
  options = dict(latent_dim=D, deter_dim=12, action_dim=A, units=32,
                 layers=1, free_nats=0.0, beta=1.0)
  options.update(kwargs)
  return RSSM(**options)


_sequence = feature_sequence  # features of size F = 16, A = 2 actions


def test_rssm_state_is_concat_of_deter_and_stoch():
  rssm = _rssm()
  assert rssm.latent_dim == 12 + D
  features, action, is_first = _sequence()
  states, _, _ = rssm.observe_sequence(features, action,
                                       tf.constant(is_first))
  prior = rssm.prior_step(states[:, 0], action[:, 0])
  std = prior.stddev().numpy()
  np.testing.assert_array_equal(std[:, :12], 0.0)  # h is deterministic
  assert np.all(std[:, 12:] > 0)
  # The prior's h is the GRU step the posterior took: the h of step 1.
  np.testing.assert_allclose(prior.mean().numpy()[:, :12],
                             states.numpy()[:, 1, :12], rtol=1e-5, atol=1e-6)
  sample = prior.sample(seed=_seed()).numpy()
  np.testing.assert_allclose(sample[:, :12], states.numpy()[:, 1, :12],
                             rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('sample', [True, False])
def test_rssm_prior_drives_imagination(sample):
  rssm = _rssm()
  dynamics = rssm.own_dynamics()
  actor = Actor(A, discrete=True, units=32, layers=1)
  features, action, is_first = _sequence()
  states = rssm.observe_sequence(features, action, tf.constant(is_first),
                                 seed=_seed())[0]
  start = tf.reshape(states, [-1, rssm.latent_dim])
  with tf.GradientTape() as tape:
    traj = imagine(dynamics, actor, start, horizon=3, seed=_seed(),
                   sample_dynamics=sample)
    objective = tf.reduce_sum(tf.sin(traj['states'][:, 1:]))
  assert traj['states'].shape == (18, 4, rssm.latent_dim)
  assert np.all(np.isfinite(traj['states'].numpy()))
  grads = tape.gradient(objective, actor.trainable_variables)
  assert any(g is not None and float(tf.reduce_max(tf.abs(g))) > 0
             for g in grads)


def test_rssm_resets_at_is_first():
  rssm = _rssm()
  features, action, is_first = _sequence()
  is_first[0, 3] = 1.0
  run = lambda f: rssm.observe_sequence(f, action, tf.constant(is_first))[0]
  base = run(features).numpy()
  changed = features.numpy().copy()
  changed[:, 1] += 5.0  # perturb step 1 of every sequence
  after = run(tf.constant(changed)).numpy()
  # Sequence 0 restarts at step 3: its states from there on are unchanged.
  np.testing.assert_allclose(after[0, 3:], base[0, 3:], rtol=1e-6, atol=1e-6)
  # Sequence 1 does not: the perturbation carries on through h.
  assert np.max(np.abs(after[1, 3:] - base[1, 3:])) > 1e-3


def test_rssm_kl_loss_with_free_nats_matches_closed_form():
  """beta (balance KL + (1 - balance) max(free, KL)), from NumPy's KL."""
  features, action, is_first = _sequence(batch=4, length=1)
  for free_nats, balance in ((0.0, 0.8), ('median', 0.8), ('median', 0.0)):
    rssm = _rssm(beta=0.5, kl_balance=balance)
    _, posterior, prior = rssm.observe_step(
        rssm.initial_state(4), tf.zeros((4, A)), features[:, 0],
        tf.ones(4))
    mq = posterior.stochastic.mean().numpy().astype(np.float64)
    sq = posterior.stochastic.stddev().numpy().astype(np.float64)
    mp = prior.stochastic.mean().numpy().astype(np.float64)
    sp = prior.stochastic.stddev().numpy().astype(np.float64)
    kl = np.sum(np.log(sp / sq) + (sq ** 2 + (mq - mp) ** 2) / (2 * sp ** 2)
                - 0.5, -1)
    if free_nats == 'median':  # some steps below the free nats, some above
      free_nats = float(np.median(kl))
    rssm.free_nats = free_nats
    _, loss, metrics = rssm.observe_sequence(features, action,
                                             tf.constant(is_first),
                                             seed=_seed())
    np.testing.assert_allclose(float(metrics['rssm_kl']), kl.mean(),
                               rtol=1e-4)
    expected = 0.5 * (balance * kl.mean()
                      + (1 - balance) * np.maximum(kl, free_nats).mean())
    np.testing.assert_allclose(float(loss), expected, rtol=1e-4)


def _rssm_kl_gradients(rssm, features, action, is_first):
  """{'prior': grads of prior_out, 'posterior': grads of post_out}."""
  rssm.observe_sequence(features, action, tf.constant(is_first))
  weights = {'prior': rssm.prior_out.trainable_variables,
             'posterior': rssm.post_out.trainable_variables}
  with tf.GradientTape() as tape:
    loss = rssm.observe_sequence(features, action, tf.constant(is_first),
                                 seed=_seed())[1]
  grads = tape.gradient(loss, weights)
  return {k: [np.zeros(v.shape) if g is None else g.numpy()
              for g, v in zip(grads[k], weights[k])] for k in weights}


def test_rssm_free_nats_stop_the_posterior_gradient_but_not_the_prior():
  """Below the free nats only the prior learns (it is the dynamics)."""
  features, action, is_first = _sequence()
  # One step: the KL of that step alone, so the posterior's weights get
  # nothing (on longer sequences the prior's term reaches them through the
  # earlier samples z_{t-1} that h_t reads).
  grads = _rssm_kl_gradients(_rssm(free_nats=1e6), features[:, :1],
                             action[:, :1], is_first[:, :1])
  assert all(np.max(np.abs(g)) == 0 for g in grads['posterior'])
  assert any(np.max(np.abs(g)) > 0 for g in grads['prior'])
  grads = _rssm_kl_gradients(_rssm(free_nats=1e6), features, action,
                             is_first)
  assert all(np.max(np.abs(g)) > 0 for g in grads['prior'])
  # All of the KL to the posterior: nothing reaches the prior's weights
  # below the free nats, which was how the prior stopped learning.
  grads = _rssm_kl_gradients(_rssm(free_nats=1e6, kl_balance=0.0),
                             features, action, is_first)
  assert all(np.max(np.abs(g)) == 0 for g in grads['prior'] +
             grads['posterior'])


def test_rssm_kl_balance_splits_the_kl_gradient():
  """One step, no free nats: the prior's output layer gets kl_balance times
  the gradient of the plain KL, the posterior's the rest.

  The reference is the closed-form KL of the raw means and stds, with no
  stop-gradient (on a first step each output layer reaches the loss only
  through its own distribution).
  """
  features, action, is_first = _sequence(length=1)
  rssm = _rssm(kl_balance=0.8, beta=1.0)
  got = _rssm_kl_gradients(rssm, features, action, is_first)
  weights = {'prior': rssm.prior_out.trainable_variables,
             'posterior': rssm.post_out.trainable_variables}
  with tf.GradientTape() as tape:
    _, posterior, prior = rssm.observe_step(
        rssm.initial_state(3), tf.zeros((3, A)), features[:, 0], tf.ones(3))
    mq, sq = posterior.stochastic.mean(), posterior.stochastic.stddev()
    mp, sp = prior.stochastic.mean(), prior.stochastic.stddev()
    kl = tf.reduce_mean(tf.reduce_sum(
        tf.math.log(sp / sq) + (sq ** 2 + (mq - mp) ** 2) / (2 * sp ** 2)
        - 0.5, -1))
  reference = tape.gradient(kl, weights)
  for key, share in (('prior', 0.8), ('posterior', 0.2)):
    # (From the zero initial state the prior's input is zero: only its
    # bias has a gradient.)
    assert any(np.max(np.abs(r.numpy())) > 0 for r in reference[key])
    for g, r in zip(got[key], reference[key]):
      np.testing.assert_allclose(g, share * r.numpy(), rtol=1e-4,
                                 atol=1e-7)


def test_world_model_with_rssm_uses_prior_as_dynamics_and_acts_stepwise():
  world_model = small_world_model(['representation_learner.type=rssm',
                                   'representation_learner.deter_dim=16'])
  assert isinstance(world_model.representation, RSSM)
  assert isinstance(world_model.dynamics, RSSMPriorDynamics)
  assert world_model.recurrent
  assert world_model.latent_dim == 16 + 8
  batch = cartpole_like_batch()
  _, latent, metrics = world_model.world_model_loss(batch)
  assert latent.shape == (4, 8, 24)
  assert float(metrics['world_model/dynamics_loss']) == 0.0
  assert 'world_model/rssm_kl' in metrics
  # The variables are shared, not duplicated.
  names = [id(v) for v in world_model.trainable_variables]
  assert len(names) == len(set(names))

  # latent_states: the sequence's posterior modes, with history (not the
  # first-step states of encode).
  states = world_model.latent_states(batch).numpy()
  assert np.max(np.abs(states[:, 1:] - world_model.encode(
      {'observation': batch['observation']}).numpy()[:, 1:])) > 1e-3

  # Acting step by step gives the posterior modes of observe_sequence.
  features = world_model.encoder(batch)
  modes = world_model.representation.observe_sequence(
      features, batch['action'], tf.cast(batch['is_first'], tf.float32))[0]
  state = world_model.initial_state(4)
  action = tf.zeros((4, 2))
  for t in range(8):
    state = world_model.observe_step(
        state, action, {'observation': batch['observation'][:, t]},
        tf.cast(batch['is_first'][:, t], tf.float32))
    action = batch['action'][:, t]
    np.testing.assert_allclose(state.numpy(), modes.numpy()[:, t],
                               rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(states, modes.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('kind', ['mlp', 'vae', 'vq'])
def test_latent_states_of_stateless_learners_are_encodings(kind):
  world_model = small_world_model([f'representation_learner.type={kind}'])
  batch = cartpole_like_batch()
  np.testing.assert_allclose(
      world_model.latent_states(batch).numpy(),
      world_model.encode(batch).numpy(), rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------
# Config and builder.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('kind, cls', [
    ('mlp', MLPBottleneck), ('none', IdentityRepresentation),
    ('mlp_autoencoder', MLPAutoencoder), ('vae', VAERepresentation),
    ('contrastive', ContrastiveRepresentation), ('vq', VQRepresentation),
    ('rssm', RSSM)])
def test_yaml_type_selects_the_class(tmp_path, kind, cls):
  path = tmp_path / 'run.yaml'
  path.write_text(f'representation_learner: {{type: {kind}, beta: 0.5, '
                  'temperature: 0.2, codebook_size: 8, free_nats: 0.5}\n'
                  'encoder: {units: 32}\n')
  config = load_config(str(path))
  assert config.representation_learner.type == kind
  world_model = small_world_model(
      [f'representation_learner.type={kind}'] +
      (['representation_learner.latent_dim=32'] if kind == 'none' else []))
  assert type(world_model.representation) is cls


def test_rssm_accepts_dynamics_sizes_and_default_kind():
  # Sizes stay (a switch to another representation uses them); a kind key
  # given at its default value changes nothing, so it is no conflict.
  config = load_config(None, ['representation_learner.type=rssm',
                              'dynamics.units=64', 'dynamics.std=learned'])
  assert config.dynamics.units == 64


@pytest.mark.parametrize('overrides, names', [
    (['representation_learner.type=rssm', 'dynamics.type=ensemble'],
     ['representation_learner.type', 'dynamics.type', "'rssm'"]),
    (['representation_learner.type=rssm', 'dynamics.std=fixed'],
     ["dynamics.std='fixed'", 'no effect']),
    (['representation_learner.type=rssm', 'dynamics.members=3',
      'dynamics.components=2'],
     ['dynamics.members=3', 'dynamics.components=2']),
    (['representation_learner.type=none', 'representation_learner.latent_dim=8',
      'encoder.units=32'],
     ['representation_learner.latent_dim', 'encoder.units']),
    (['representation_learner.type=vq',
      'representation_learner.codebook_size=1'],
     ['representation_learner.codebook_size']),
    (['representation_learner.type=vq', 'representation_learner.latent_dim=30',
      'representation_learner.codebook_groups=8'],
     ['representation_learner.latent_dim', 'representation_learner.codebook_groups',
      'multiple']),
    (['representation_learner.codebook_groups=0'],
     ['representation_learner.codebook_groups']),
    (['representation_learner.temperature=0'],
     ['representation_learner.temperature']),
    (['representation_learner.free_nats=-1'],
     ['representation_learner.free_nats']),
    (['representation_learner.type=transformer'],
     ['representation_learner.type', "'vq'"]),
])
def test_config_refuses_bad_representation_settings(overrides, names):
  with pytest.raises(ConfigError) as info:
    load_config(None, overrides)
  for name in names:
    assert name in str(info.value)


# ---------------------------------------------------------------------------
# Inside the world model: every type trains.
# ---------------------------------------------------------------------------

TERM = {'none': None, 'mlp_autoencoder': 'reconstruction_mse',
        'vae': None, 'contrastive': 'info_nce', 'vq': 'vq_commitment_loss',
        'rssm': None}


@pytest.mark.parametrize('kind', list(TERM))
def test_world_model_loss_falls_on_cartpole_like_batch(kind):
  overrides = [f'representation_learner.type={kind}']
  if kind == 'none':
    overrides.append('representation_learner.latent_dim=32')
  world_model = small_world_model(overrides)
  before, after = train_world_model(world_model, cartpole_like_batch())
  assert all(math.isfinite(v) for v in before.values())
  assert all(math.isfinite(v) for v in after.values())
  assert after['loss'] < before['loss'] - 2.0, (before, after)
  assert after['decoder_nll'] < before['decoder_nll'], (before, after)
  if TERM[kind]:
    assert after[TERM[kind]] < before[TERM[kind]], (before, after)
  if kind == 'vq':
    assert after['vq_codes_used'] > 1


def test_kl_weight_defaults_by_type_and_an_explicit_value_wins(tmp_path):
  """representation_learner.beta left unset is 0.01 for 'vae' and 1.0 for
  'rssm' (config.REPRESENTATION_BETA), in the config and in the built
  learner; a given beta is kept, and the saved config round-trips."""
  from wm_tf.config import load_config, to_dict, from_dict
  for kind, want in (('vae', 0.01), ('rssm', 1.0)):
    config = load_config(None, [f'representation_learner.type={kind}'])
    assert config.representation_learner.beta == want
    assert small_world_model(
        [f'representation_learner.type={kind}']).representation.beta == want
    given = load_config(None, [f'representation_learner.type={kind}',
                               'representation_learner.beta=0.3'])
    assert given.representation_learner.beta == 0.3
    assert from_dict(to_dict(config)).representation_learner.beta == want
  with pytest.raises(ConfigError, match='representation_learner.beta'):
    load_config(None, ['representation_learner.type=vae',
                       'representation_learner.beta=-1'])
  # Types without a KL term have none; a run saved when every type wrote
  # beta: 1.0 still resumes with the config it was started with.
  mlp = ['representation_learner.type=mlp']
  assert load_config(None, mlp + ['representation_learner.beta=1.0']
                     ).representation_learner.beta is None
  from wm_tf.runtime.checkpoints import check_saved_config
  old = to_dict(load_config(None, mlp))
  old['representation_learner']['beta'] = 1.0
  (tmp_path / 'config.yaml').write_text(yaml.safe_dump(old))
  assert check_saved_config(str(tmp_path), load_config(None, mlp)) == []


def test_rssm_settings_reach_the_representation_from_the_config():
  world_model = small_world_model([
      'representation_learner.type=rssm', 'representation_learner.kl_balance=0.3',
      'representation_learner.free_nats=2.5', 'representation_learner.beta=0.5'])
  rep = world_model.representation
  assert (rep.kl_balance, rep.free_nats, rep.beta) == (0.3, 2.5, 0.5)
  with pytest.raises(ConfigError, match=r'kl_balance.*\[0, 1\]'):
    small_world_model(['representation_learner.type=rssm',
                       'representation_learner.kl_balance=1.2'])
