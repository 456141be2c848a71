"""Tests for wm_tf/world_model.py: the loss terms, their masks and gradients.

References are float64 NumPy computations from the components' raw outputs
(means, stds, logits), never the TFP log_prob the loss itself uses.
"""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from wm_tf.agent.builder import build_world_model
from wm_tf.config import ConfigError, load_config
from wm_tf.runtime.collector import Collector, random_actions
from wm_tf.runtime.environments import make_vector_env
from wm_tf.world_model import WorldModel

LOG_2PI = math.log(2.0 * math.pi)


def _world_model(overrides, spec, seed=0):
  keras.utils.set_random_seed(seed)
  return build_world_model(load_config(None, overrides), spec)


def _normal_nll(x, mean, std):
  """-log N(x; mean, std) summed over the last axis, float64."""
  x, mean, std = (np.asarray(a, np.float64) for a in (x, mean, std))
  return np.sum(0.5 * ((x - mean) / std) ** 2 + np.log(std) + 0.5 * LOG_2PI,
                -1)


def _bernoulli_nll(x, logits):
  logits = np.asarray(logits, np.float64)
  # -log sigmoid(l) = softplus(-l); -log(1 - sigmoid(l)) = softplus(l).
  return np.where(x > 0.5, np.logaddexp(0.0, -logits),
                  np.logaddexp(0.0, logits))


def _masked_mean(values, mask):
  return np.sum(values * mask) / max(np.sum(mask), 1.0)


def _reference_terms(wm, batch):
  """Every loss term recomputed in NumPy from the components' outputs."""
  obs = batch['observation']
  is_first = batch['is_first'].numpy().astype(np.float64)
  cont = 1.0 - batch['is_terminal'].numpy().astype(np.float64)
  latent = wm.encode({'observation': obs})
  prediction = wm.dynamics(latent[:, :-1], batch['action'][:, :-1])
  target = latent.numpy()[:, 1:]
  real = 1.0 - is_first[:, 1:]
  pred_mean = prediction.mean().numpy()
  pred_std = prediction.stddev().numpy()
  # The continue head's logits, read from its Bernoulli.
  cont_logits = wm.continue_(latent).logits_parameter().numpy()
  return {
      'dynamics_nll': _masked_mean(
          _normal_nll(target, pred_mean, pred_std), real),
      'dynamics_mse': _masked_mean(
          np.mean((target - pred_mean) ** 2, -1), real),
      'reward_nll': _masked_mean(
          _normal_nll(batch['reward'].numpy()[..., None],
                      wm.reward(latent).mean().numpy()[..., None], 1.0),
          1.0 - is_first),
      'continue_nll': np.mean(_bernoulli_nll(cont, cont_logits)),
      'decoder_nll': np.mean(
          _normal_nll(obs.numpy(),
                      wm.decoder(latent)['observation'].mean().numpy(), 1.0)),
      'latent': latent.numpy(),
  }


def _with_first(batch, b, t, value):
  is_first = batch['is_first'].numpy().copy()
  is_first[b, t] = value
  return {**batch, 'is_first': tf.constant(is_first)}


def _with_observation(batch, b, t, new_obs):
  obs = batch['observation'].numpy().copy()
  obs[b, t] = new_obs
  return {**batch, 'observation': tf.constant(obs)}


# ---------------------------------------------------------------------------
# The loss terms against NumPy.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('std', ['learned', 'fixed'])
def test_loss_terms_match_numpy_masked_means(small_overrides, cartpole_spec,
                                             batch_factory, std):
  overrides = small_overrides + [
      f'dynamics.std={std}', 'dynamics.fixed_std=0.5',
      'world_model.loss_scales.dynamics=0.5',
      'world_model.loss_scales.reward=2.0',
      'world_model.loss_scales.continue=3.0',
      'world_model.loss_scales.decoder=0.25']
  wm = _world_model(overrides, cartpole_spec)
  batch = batch_factory(1, batch_size=3, length=7, first_prob=0.3,
                        terminal_prob=0.2)
  # Rewards at is_first steps must be ignored: make them huge.
  reward = batch['reward'].numpy()
  reward[batch['is_first'].numpy()] = 1e3
  batch = {**batch, 'reward': tf.constant(reward)}
  assert batch['is_first'].numpy()[:, 1:].any(), 'need in-sequence firsts'

  total, latent, metrics = wm.world_model_loss(batch)
  ref = _reference_terms(wm, batch)

  np.testing.assert_allclose(latent.numpy(), ref['latent'], rtol=1e-6,
                             atol=1e-6)
  for name in ('dynamics_nll', 'dynamics_mse', 'reward_nll', 'continue_nll',
               'decoder_nll'):
    np.testing.assert_allclose(float(metrics[f'world_model/{name}']),
                               ref[name], rtol=1e-4, atol=1e-4, err_msg=name)
  expected_total = (0.5 * ref['dynamics_nll'] + 2.0 * ref['reward_nll'] +
                    3.0 * ref['continue_nll'] + 0.25 * ref['decoder_nll'])
  np.testing.assert_allclose(float(total), expected_total, rtol=1e-4,
                             atol=1e-4)
  np.testing.assert_allclose(float(metrics['world_model/loss']),
                             expected_total, rtol=1e-4, atol=1e-4)
  # The masked 1e3 rewards would add ~5e5 to the reward NLL.
  assert ref['reward_nll'] < 100.0
  # The named terms, unscaled, are the same numbers.
  terms = wm.loss_terms(batch)[0]
  assert list(terms) == ['dynamics', 'reward', 'continue', 'decoder',
                         'representation']
  for name, key in (('dynamics', 'dynamics_nll'), ('reward', 'reward_nll'),
                    ('continue', 'continue_nll'), ('decoder', 'decoder_nll')):
    np.testing.assert_allclose(float(terms[name]), ref[key], rtol=1e-4,
                               atol=1e-4, err_msg=name)


@pytest.mark.parametrize('weight', [1.0, 20.0])
def test_terminal_weight_is_a_weighted_mean_of_the_continue_nll(
    small_overrides, cartpole_spec, batch_factory, weight):
  wm = _world_model(small_overrides + [
      f'world_model.terminal_weight={weight}'], cartpole_spec)
  batch = batch_factory(2, batch_size=3, length=7, terminal_prob=0.2)
  terminal = batch['is_terminal'].numpy().astype(np.float64)
  assert 0 < terminal.sum() < terminal.size
  latent = wm.encode({'observation': batch['observation']})
  nll = _bernoulli_nll(1.0 - terminal,
                       wm.continue_(latent).logits_parameter().numpy())
  w = np.where(terminal > 0, weight, 1.0)
  expected = np.sum(w * nll) / np.sum(w)
  _, _, metrics = wm.world_model_loss(batch)
  np.testing.assert_allclose(float(metrics['world_model/continue_nll']),
                             expected, rtol=1e-5)
  if weight != 1.0:  # the weighting is not the plain mean
    assert abs(expected - nll.mean()) > 1e-3 * abs(expected)


def test_terminal_weight_must_be_positive():
  with pytest.raises(ConfigError, match='world_model.terminal_weight'):
    load_config(None, ['world_model.terminal_weight=0'])


def test_loss_scales_must_match_the_terms(small_overrides, cartpole_spec):
  wm = _world_model(small_overrides, cartpole_spec)
  assert set(wm.loss_scales) == set(WorldModel.LOSS_TERMS)
  parts = dict(encoder=wm.encoder, representation=wm.representation,
               dynamics=wm.dynamics, reward=wm.reward, continue_=wm.continue_,
               decoder=wm.decoder)
  scales = dict(wm.loss_scales)
  with pytest.raises(ValueError, match=(
      r'^world_model.loss_scales.real is not a loss term; allowed: '
      r'dynamics, reward, continue, decoder.$')):
    WorldModel(**parts, loss_scales={**scales, 'real': 1.0})
  del scales['continue']
  with pytest.raises(ValueError, match=(
      r'^world_model.loss_scales.continue is missing')):
    WorldModel(**parts, loss_scales=scales)
  # From the config an unknown scale is refused with the allowed ones.
  with pytest.raises(ConfigError, match=(
      r"world_model.loss_scales.real'.*Allowed keys in "
      r'world_model.loss_scales: continue, decoder, dynamics, reward')):
    load_config(None, ['world_model.loss_scales.real=1'])


def test_dynamics_ignores_transition_into_first_step(
    small_overrides, cartpole_spec, batch_factory):
  wm = _world_model(small_overrides, cartpole_spec)
  batch = batch_factory(2, batch_size=2, length=6, first_prob=0.0)
  last = batch['observation'].shape[1] - 1
  new_obs = np.array([3.0, -2.0, 1.5, 4.0], np.float32)

  # Step `last` of sequence 0 starts a new episode: the transition into it
  # is masked, and nothing else reads the observation's latent as a target.
  boundary = _with_first(batch, 0, last, True)
  _, _, before = wm.world_model_loss(boundary)
  _, _, after = wm.world_model_loss(_with_observation(boundary, 0, last,
                                                      new_obs))
  for name in ('dynamics_nll', 'dynamics_mse'):
    np.testing.assert_allclose(float(after[f'world_model/{name}']),
                               float(before[f'world_model/{name}']),
                               rtol=1e-6, atol=1e-6, err_msg=name)
  # The perturbation is real: the decoder term sees it.
  assert abs(float(after['world_model/decoder_nll']) -
             float(before['world_model/decoder_nll'])) > 1e-2

  # Control: without the boundary the same change moves the dynamics NLL.
  _, _, plain_before = wm.world_model_loss(batch)
  _, _, plain_after = wm.world_model_loss(_with_observation(batch, 0, last,
                                                            new_obs))
  assert abs(float(plain_after['world_model/dynamics_nll']) -
             float(plain_before['world_model/dynamics_nll'])) > 1e-3


def test_dynamics_averages_over_real_transitions_only(
    small_overrides, cartpole_spec, batch_factory):
  """With one real transition left, the NLL is that transition's NLL."""
  wm = _world_model(small_overrides, cartpole_spec)
  batch = batch_factory(3, batch_size=2, length=4, first_prob=0.0)
  is_first = np.ones((2, 4), bool)
  is_first[1, 2] = False  # the one real transition: (1, 1) -> (1, 2)
  batch = {**batch, 'is_first': tf.constant(is_first)}
  _, latent, metrics = wm.world_model_loss(batch)
  pred = wm.dynamics(latent[1:2, 1], batch['action'][1:2, 1])
  expected = _normal_nll(latent.numpy()[1:2, 2], pred.mean().numpy(),
                         pred.stddev().numpy())[0]
  np.testing.assert_allclose(float(metrics['world_model/dynamics_nll']),
                             expected, rtol=1e-4, atol=1e-4)

  # No real transition at all: the term is 0, not NaN.
  all_first = {**batch, 'is_first': tf.ones((2, 4), tf.bool)}
  _, _, metrics = wm.world_model_loss(all_first)
  assert float(metrics['world_model/dynamics_nll']) == 0.0
  assert float(metrics['world_model/reward_nll']) == 0.0


# ---------------------------------------------------------------------------
# Gradients of the dynamics target.
# ---------------------------------------------------------------------------


def _dynamics_nll_with_target(wm, batch, constant_target):
  """The masked dynamics NLL, target either a constant or the live latent."""
  latent = wm.encode(batch)
  target = latent[:, 1:]
  if constant_target:
    target = tf.constant(target.numpy())
  prediction = wm.dynamics(latent[:, :-1], batch['action'][:, :-1])
  real = 1.0 - tf.cast(batch['is_first'][:, 1:], tf.float32)
  nll = -prediction.log_prob(target)
  return tf.reduce_sum(nll * real) / tf.reduce_sum(real)


def _upstream_variables(wm):
  return wm.encoder.trainable_variables + wm.representation.trainable_variables


@pytest.mark.parametrize('stop_gradient', [True, False])
def test_stop_gradient_target_blocks_encoder_gradient_from_target(
    small_overrides, cartpole_spec, batch_factory, stop_gradient):
  wm = _world_model(
      small_overrides + [f'world_model.stop_gradient_target={stop_gradient}'],
      cartpole_spec)
  batch = batch_factory(4, batch_size=3, length=6)
  wm.world_model_loss(batch)  # build
  variables = _upstream_variables(wm)

  with tf.GradientTape() as tape:
    _, _, metrics = wm.world_model_loss(batch)
  grads = tape.gradient(metrics['world_model/dynamics_nll'], variables)
  refs = {}
  for constant in (True, False):
    with tf.GradientTape() as tape:
      loss = _dynamics_nll_with_target(wm, batch, constant)
    refs[constant] = tape.gradient(loss, variables)

  assert all(g is not None for g in grads)
  for g, want in zip(grads, refs[stop_gradient]):
    np.testing.assert_allclose(g.numpy(), want.numpy(), rtol=1e-4, atol=1e-6)
  # The two references differ, so matching one excludes the other.
  diff = max(float(tf.reduce_max(tf.abs(a - b)))
             for a, b in zip(refs[True], refs[False]))
  assert diff > 1e-4


# ---------------------------------------------------------------------------
# The loss can be minimised.
# ---------------------------------------------------------------------------


def _cartpole_batch(spec, num_envs=4, length=16, seed=0):
  """[num_envs, length] real CartPole steps from the collector."""
  envs = make_vector_env(spec.id, num_envs, 'sync')
  try:
    collector = Collector(envs, spec, seed=seed)
    rng = np.random.default_rng(seed)
    records = [collector.step(lambda obs: random_actions(rng, spec, num_envs))
               for _ in range(length)]
  finally:
    envs.close()
  return {key: tf.constant(np.stack([r[key] for r in records], 1))
          for key in records[0]}


def test_world_model_loss_falls_on_fixed_cartpole_batch(small_overrides,
                                                       cartpole_spec):
  batch = _cartpole_batch(cartpole_spec)
  assert batch['is_first'].numpy()[:, 1:].any(), 'want episode boundaries'
  wm = _world_model(small_overrides, cartpole_spec)
  optimizer = keras.optimizers.Adam(1e-3)

  @tf.function
  def train_step():
    with tf.GradientTape() as tape:
      loss, _, metrics = wm.world_model_loss(batch)
    variables = wm.trainable_variables
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    return metrics

  def terms():
    metrics = wm.world_model_loss(batch)[2]
    return {k.split('/')[1]: float(v) for k, v in metrics.items()}

  start = terms()
  for _ in range(250):
    train_step()
  end = terms()

  # Analytic floors of the unit-std Normal NLLs: O/2 log 2pi and 1/2 log 2pi.
  decoder_floor = 0.5 * cartpole_spec.observation_dim * LOG_2PI
  reward_floor = 0.5 * LOG_2PI
  assert end['loss'] < start['loss'] - 10.0, (start, end)
  assert end['dynamics_mse'] < start['dynamics_mse'] / 5.0, (start, end)
  assert (end['decoder_nll'] - decoder_floor <
          (start['decoder_nll'] - decoder_floor) / 2.5), (start, end)
  assert (end['reward_nll'] - reward_floor <
          (start['reward_nll'] - reward_floor) / 10.0), (start, end)
  assert end['continue_nll'] < start['continue_nll'] / 2.5, (start, end)
  assert all(math.isfinite(v) for v in end.values())


# ---------------------------------------------------------------------------
# The continue head's sharpness at true terminals.


def _continue_logits(world_model, latent):
  """The continue head's logits [B, T] from its own layers, float64."""
  head = world_model.continue_
  return np.asarray(head.out(head.mlp(latent)), np.float64)[..., 0]


def test_continue_at_terminal_is_the_median_over_terminal_steps():
  from conftest import SMALL_OVERRIDES
  from world_model_training import CARTPOLE_SPEC, cartpole_like_batch
  world_model = _world_model(list(SMALL_OVERRIDES), CARTPOLE_SPEC)
  batch = cartpole_like_batch(batch_size=6, length=12)
  latent = world_model.latent_states(batch)
  world_model.continue_(latent)  # builds the head
  rng = np.random.default_rng(0)
  out = world_model.continue_.out  # a live head: its output starts at zero
  out.kernel.assign(rng.normal(size=out.kernel.shape).astype(np.float32))
  terminal = np.asarray(batch['is_terminal'])
  assert terminal.sum() >= 3
  probability = 1.0 / (1.0 + np.exp(-_continue_logits(world_model, latent)))
  at_terminal = np.sort(probability[terminal])
  expected = at_terminal[(len(at_terminal) - 1) // 2]  # the lower median
  got = world_model.continue_at_terminal(latent, batch['is_terminal'])
  np.testing.assert_allclose(float(got), expected, rtol=1e-5)
  # Not the median over every step.
  assert abs(expected - np.median(probability)) > 1e-3
  none = world_model.continue_at_terminal(latent, np.zeros_like(terminal))
  assert np.isnan(float(none))
  # A train step reports it.
  world_model.use_optimizer(keras.optimizers.Adam(1e-4), 100.0)
  _, metrics = world_model.train(batch)
  np.testing.assert_allclose(
      float(metrics['world_model/continue_at_terminal']), expected, rtol=1e-5)


def test_averager_skips_the_nans_of_sparse_metrics_only():
  from wm_tf.runtime.metrics import ScalarAverager
  averager = ScalarAverager()
  for value in (0.5, float('nan'), 0.9):
    averager.add({'world_model/continue_at_terminal': value,
                  'world_model/loss': value})
  means = averager.flush()
  assert means['world_model/continue_at_terminal'] == pytest.approx(0.7)
  assert np.isnan(means['world_model/loss'])
  averager.add({'world_model/continue_at_terminal': float('nan')})
  assert np.isnan(averager.flush()['world_model/continue_at_terminal'])
