"""Tests for wm_tf/components/dynamics.py: every dynamics.type.

References are float64 NumPy computations from the models' raw parameters
(member means and stds, mixture logits), never the TFP methods under test.
"""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from wm_tf.agent.imagination import imagine
from wm_tf.components.actor import Actor
from wm_tf.components.dynamics import (DYNAMICS, DeterministicDynamics,
                                       EnsembleDynamics, EnsembleNormal,
                                       GaussianDynamics, MixtureDynamics,
                                       poisson_bootstrap_weights)
from wm_tf.config import ConfigError, load_config
from world_model_training import (cartpole_like_batch, small_world_model,
                                  train_world_model)

D, A = 8, 3
SMALL = dict(units=32, layers=2)
LOG_2PI = math.log(2.0 * math.pi)


def _inputs(batch_shape, seed=0):
  rng = np.random.default_rng(seed)
  state = tf.constant(rng.uniform(-1, 1, batch_shape + (D,)), tf.float32)
  action = tf.one_hot(rng.integers(0, A, batch_shape), A)
  return state, action


def _seed(a=1, b=2):
  return tf.constant([a, b], tf.int32)


def _normal_log_prob(x, mean, std):
  """log N(x; mean, std) summed over the last axis, float64."""
  x, mean, std = (np.asarray(v, np.float64) for v in (x, mean, std))
  return np.sum(-0.5 * ((x - mean) / std) ** 2 - np.log(std) - 0.5 * LOG_2PI,
                -1)


def _logsumexp(x, axis):
  top = np.max(x, axis=axis, keepdims=True)
  return np.squeeze(top, axis) + np.log(np.sum(np.exp(x - top), axis=axis))


def _make(kind, **kwargs):
  options = dict(SMALL)
  if kind == 'ensemble':
    options.update(members=4)
  if kind == 'mixture':
    options.update(components=3)
  options.update(kwargs)
  return DYNAMICS.get(kind)(D, **options)


ALL_TYPES = ['gaussian', 'deterministic', 'ensemble', 'mixture']


def test_registry_has_every_type():
  assert DYNAMICS.get('deterministic') is DeterministicDynamics
  assert DYNAMICS.get('ensemble') is EnsembleDynamics
  assert DYNAMICS.get('mixture') is MixtureDynamics
  assert set(ALL_TYPES) <= set(DYNAMICS.names())


# ---------------------------------------------------------------------------
# Shapes and the API imagination relies on.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('batch_shape', [(5,), (4, 7)])
@pytest.mark.parametrize('kind', ALL_TYPES)
def test_distribution_shapes(kind, batch_shape):
  dist = _make(kind)(*_inputs(batch_shape))
  assert dist.batch_shape == batch_shape
  assert dist.event_shape == (D,)
  for value in (dist.mean(), dist.stddev(), dist.sample(seed=_seed())):
    assert value.shape == batch_shape + (D,)
    assert np.all(np.isfinite(value.numpy()))
  assert dist.sample(3, seed=_seed()).shape == (3,) + batch_shape + (D,)
  if kind != 'deterministic':  # a point mass has no finite density off it
    log_prob = dist.log_prob(dist.mean())
    assert log_prob.shape == batch_shape
    assert np.all(np.isfinite(log_prob.numpy()))


@pytest.mark.parametrize('kind', ALL_TYPES)
@pytest.mark.parametrize('sample', [True, False])
def test_imagination_runs_and_backpropagates_to_actor(kind, sample):
  """imagine() samples or takes the mean; returns reach the actor."""
  dynamics = _make(kind)
  actor = Actor(A, discrete=True, units=32, layers=1)
  start, _ = _inputs((6,))
  with tf.GradientTape() as tape:
    traj = imagine(dynamics, actor, start, horizon=3, seed=_seed(),
                   sample_dynamics=sample)
    objective = tf.reduce_sum(tf.sin(traj['states'][:, 1:]))
  assert traj['states'].shape == (6, 4, D)
  assert np.all(np.isfinite(traj['states'].numpy()))
  grads = tape.gradient(objective, actor.trainable_variables)
  assert any(g is not None and float(tf.reduce_max(tf.abs(g))) > 0
             for g in grads)


@pytest.mark.parametrize('discrete', [True, False])
@pytest.mark.parametrize('jit', [False, True])
def test_imagination_loop_equals_unrolled(discrete, jit):
  """imagine(unroll=False), a tf.while_loop, draws the same numbers and
  gives the same rollout and gradients as the unrolled form."""
  dynamics = _make('gaussian')
  actor = (Actor(A, discrete=True, units=32, layers=1) if discrete else
           Actor(A, discrete=False, low=[-1.0] * A, high=[1.0] * A,
                 units=32, layers=1))
  start, _ = _inputs((6,))
  actor(start), dynamics(start, tf.zeros([6, A]))  # build the weights
  variables = actor.trainable_variables + dynamics.trainable_variables

  def rollout(unroll):
    with tf.GradientTape() as tape:
      traj = imagine(dynamics, actor, start, horizon=5, seed=_seed(),
                     unroll=unroll)
      objective = (tf.reduce_sum(tf.sin(traj['states'][:, 1:])) +
                   tf.reduce_sum(traj['log_probs']) +
                   tf.reduce_sum(traj['entropies']))
    return traj, tape.gradient(objective, variables)

  run = tf.function(rollout, jit_compile=True) if jit else rollout
  unrolled, unrolled_grads = run(True)
  looped, looped_grads = run(False)
  for key in ('states', 'actions', 'log_probs', 'entropies'):
    assert looped[key].shape == unrolled[key].shape, key
    np.testing.assert_allclose(looped[key].numpy(), unrolled[key].numpy(),
                               rtol=1e-5, atol=1e-5, err_msg=key)
  np.testing.assert_array_equal(looped['states'][:, 0].numpy(),
                                start.numpy())
  for var, a, b in zip(variables, unrolled_grads, looped_grads):
    assert a is not None and b is not None, var.path
    np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-4, atol=1e-5,
                               err_msg=var.path)


# ---------------------------------------------------------------------------
# Deterministic.
# ---------------------------------------------------------------------------


def test_deterministic_point_mass_and_mse_loss():
  dynamics = _make('deterministic')
  state, action = _inputs((3, 5))
  dist = dynamics(state, action)
  mean = dist.mean().numpy()
  np.testing.assert_array_equal(dist.sample(seed=_seed()).numpy(), mean)
  np.testing.assert_array_equal(dist.stddev().numpy(), np.zeros_like(mean))

  rng = np.random.default_rng(1)
  target = rng.normal(size=mean.shape).astype(np.float32)
  mask = (rng.random((3, 5)) < 0.6).astype(np.float32)
  loss, metrics = dynamics.transition_loss(state, action, target, mask)
  per_step = np.mean((mean.astype(np.float64) - target) ** 2, -1)
  expected = np.sum(per_step * mask) / np.sum(mask)
  np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
  np.testing.assert_allclose(float(metrics['dynamics_mse']), expected,
                             rtol=1e-5)


# ---------------------------------------------------------------------------
# Ensemble.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('std', ['fixed', 'learned'])
def test_ensemble_mean_and_disagreement_match_numpy(std):
  dynamics = _make('ensemble', std=std, fixed_std=0.05)
  state, action = _inputs((6,))
  dist = dynamics(state, action)
  loc, scale = (t.numpy().astype(np.float64)
                for t in dynamics.member_parameters(state, action))
  assert loc.shape == (6, 4, D)
  # Each member is its own network: its prediction is its Gaussian's mean.
  for k, member in enumerate(dynamics.members):
    np.testing.assert_allclose(member(state, action).mean().numpy(),
                               loc[:, k], rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(dist.mean().numpy(), loc.mean(1), rtol=1e-5,
                             atol=1e-6)
  disagreement = np.std(loc, axis=1)  # population std across members
  assert np.all(disagreement > 0)
  np.testing.assert_allclose(dist.disagreement().numpy(), disagreement,
                             rtol=1e-4, atol=1e-6)
  expected = disagreement + (scale.mean(1) if std == 'learned' else 0.0)
  np.testing.assert_allclose(dist.stddev().numpy(), expected, rtol=1e-4,
                             atol=1e-6)
  # log_prob: the uniform mixture of the members.
  x = loc.mean(1) + 0.1 * np.random.default_rng(2).normal(size=(6, D))
  member_log_probs = np.stack(
      [_normal_log_prob(x, loc[:, k], scale[:, k]) for k in range(4)], -1)
  np.testing.assert_allclose(
      dist.log_prob(x.astype(np.float32)).numpy(),
      _logsumexp(member_log_probs, -1) - np.log(4), rtol=1e-4, atol=1e-3)


def test_ensemble_sample_member_and_mean_modes():
  kwargs = dict(std='fixed', fixed_std=1e-4)
  state, action = _inputs((200,))
  member_mode = _make('ensemble', imagination='sample_member', **kwargs)
  loc = member_mode.member_parameters(state, action)[0].numpy()
  sample = member_mode(state, action).sample(seed=_seed()).numpy()
  # Each sample is (up to the 1e-4 noise) one member's mean ...
  distance = np.max(np.abs(sample[:, None] - loc), -1)  # [N, K]
  assert np.all(distance.min(-1) < 1e-3)
  # ... and all members get picked.
  assert len(set(np.argmin(distance, -1))) == 4

  mean_mode = _make('ensemble', imagination='mean', **kwargs)
  mean_mode(state, action)
  mean_mode.set_weights(member_mode.get_weights())
  sample = mean_mode(state, action).sample(seed=_seed()).numpy()
  np.testing.assert_allclose(sample, loc.mean(1), atol=1e-3)


def test_poisson_bootstrap_weights_are_poisson_one_and_seeded():
  weights = poisson_bootstrap_weights([400, 50], 3, _seed()).numpy()
  assert weights.shape == (3, 400, 50)
  assert np.all(weights == np.round(weights)) and weights.min() >= 0
  counts = weights.ravel()
  np.testing.assert_allclose(counts.mean(), 1.0, atol=0.02)
  np.testing.assert_allclose(counts.var(), 1.0, atol=0.04)
  for k in range(4):
    np.testing.assert_allclose(np.mean(counts == k),
                               math.exp(-1) / math.factorial(k), atol=0.01)
  again = poisson_bootstrap_weights([400, 50], 3, _seed()).numpy()
  np.testing.assert_array_equal(weights, again)
  other = poisson_bootstrap_weights([400, 50], 3, _seed(1, 3)).numpy()
  assert np.mean(weights != other) > 0.3


def test_members_get_different_bootstrap_masks():
  dynamics = _make('ensemble')
  mask = np.ones((4, 7), np.float32)
  mask[1, 3:] = 0.0
  weights = dynamics.bootstrap_weights(tf.constant(mask), _seed()).numpy()
  assert weights.shape == (4, 4, 7)
  assert np.all(weights[:, mask == 0] == 0)  # masked transitions stay out
  for i in range(4):
    for j in range(i):
      assert not np.array_equal(weights[i], weights[j])
  # Some transitions are left out of some members' bootstrap.
  assert np.any(weights[:, mask == 1] == 0)


def test_ensemble_transition_loss_is_bootstrap_weighted_member_nll():
  dynamics = _make('ensemble')
  state, action = _inputs((4, 7))
  rng = np.random.default_rng(3)
  target = rng.uniform(-1, 1, (4, 7, D)).astype(np.float32)
  mask = (rng.random((4, 7)) < 0.8).astype(np.float32)
  loss, metrics = dynamics.transition_loss(state, action, target, mask,
                                           seed=_seed())
  weights = dynamics.bootstrap_weights(tf.constant(mask), _seed()).numpy()
  loc, scale = dynamics.member_parameters(state, action)
  expected = []
  for k in range(4):
    nll = -_normal_log_prob(target, loc.numpy()[:, :, k],
                            scale.numpy()[:, :, k])
    expected.append(np.sum(weights[k] * nll) / np.sum(weights[k]))
  np.testing.assert_allclose(float(loss), np.mean(expected), rtol=1e-4)
  assert np.std(expected) > 0
  assert 'dynamics_disagreement' in metrics and 'dynamics_nll' in metrics


def _identical_members(dynamics, state, action):
  dynamics(state, action)
  first = dynamics.members[0].get_weights()
  for member in dynamics.members[1:]:
    member.set_weights(first)


@pytest.mark.parametrize('bootstrap', [True, False])
def test_bootstrap_makes_identically_initialised_members_differ(bootstrap):
  """Same start, same batch: only the bootstrap can make members differ."""
  dynamics = _make('ensemble', bootstrap=bootstrap)
  state, action = _inputs((4, 7))
  target = tf.constant(
      np.random.default_rng(4).uniform(-1, 1, (4, 7, D)), tf.float32)
  mask = tf.ones((4, 7))
  _identical_members(dynamics, state, action)
  optimizer = keras.optimizers.Adam(1e-2)
  for step in range(10):
    with tf.GradientTape() as tape:
      loss, _ = dynamics.transition_loss(state, action, target, mask,
                                         seed=_seed(7, step))
    grads = tape.gradient(loss, dynamics.trainable_variables)
    optimizer.apply_gradients(zip(grads, dynamics.trainable_variables))
  loc = dynamics.member_parameters(state, action)[0].numpy()
  spread = np.max(np.abs(loc - loc[:, :, :1]))
  if bootstrap:
    assert spread > 1e-3
  else:
    assert spread < 1e-5


def test_ensemble_needs_a_seed_to_bootstrap():
  dynamics = _make('ensemble')
  state, action = _inputs((2, 3))
  with pytest.raises(ValueError, match='seed'):
    dynamics.transition_loss(state, action, state, tf.ones((2, 3)))


def test_ensemble_normal_stddev_without_aleatoric_is_disagreement():
  loc = np.random.default_rng(5).normal(size=(3, 5, 2)).astype(np.float32)
  dist = EnsembleNormal(loc, np.full_like(loc, 0.3), aleatoric=False)
  np.testing.assert_allclose(dist.stddev().numpy(), np.std(loc, 1),
                             rtol=1e-5)


# ---------------------------------------------------------------------------
# Mixture.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('std', ['fixed', 'learned'])
def test_mixture_log_prob_matches_numpy_logsumexp(std):
  dynamics = _make('mixture', std=std, fixed_std=0.3)
  state, action = _inputs((6,))
  dist = dynamics(state, action)
  logits = dist.mixture_distribution.logits.numpy().astype(np.float64)
  components = dist.components_distribution.distribution
  loc = components.loc.numpy().astype(np.float64)  # [6, K, D]
  scale = (np.broadcast_to(components.scale.numpy(), loc.shape)
           .astype(np.float64))
  assert logits.shape == (6, 3) and loc.shape == (6, 3, D)
  if std == 'fixed':
    np.testing.assert_allclose(scale, 0.3)
  log_weights = logits - _logsumexp(logits, -1)[:, None]
  x = loc[:, 0] + 0.2 * np.random.default_rng(6).normal(size=(6, D))
  component_log_probs = np.stack(
      [_normal_log_prob(x, loc[:, k], scale[:, k]) for k in range(3)], -1)
  expected = _logsumexp(log_weights + component_log_probs, -1)
  np.testing.assert_allclose(dist.log_prob(x.astype(np.float32)).numpy(),
                             expected, rtol=1e-4, atol=1e-3)
  # Mean and std of the mixture (law of total variance).
  weights = np.exp(log_weights)[..., None]
  mean = np.sum(weights * loc, 1)
  variance = np.sum(weights * (scale ** 2 + loc ** 2), 1) - mean ** 2
  np.testing.assert_allclose(dist.mean().numpy(), mean, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(dist.stddev().numpy(), np.sqrt(variance),
                             rtol=1e-3, atol=1e-5)


def test_mixture_transition_loss_is_masked_nll():
  dynamics = _make('mixture')
  state, action = _inputs((3, 4))
  target = tf.constant(
      np.random.default_rng(7).uniform(-1, 1, (3, 4, D)), tf.float32)
  mask = tf.constant([[1, 1, 0, 1], [0, 0, 0, 1], [1, 1, 1, 1]], tf.float32)
  loss, metrics = dynamics.transition_loss(state, action, target, mask)
  nll = -dynamics(state, action).log_prob(target).numpy()
  expected = np.sum(nll * mask.numpy()) / np.sum(mask.numpy())
  np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
  np.testing.assert_allclose(float(metrics['dynamics_nll']), expected,
                             rtol=1e-5)


# ---------------------------------------------------------------------------
# Config and builder.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('kind, cls', [
    ('gaussian', GaussianDynamics), ('deterministic', DeterministicDynamics),
    ('ensemble', EnsembleDynamics), ('mixture', MixtureDynamics)])
def test_yaml_type_selects_the_class(tmp_path, kind, cls):
  path = tmp_path / 'run.yaml'
  # The design's stateless representation (the recipe's RSSM is its own
  # dynamics and refuses the others).
  path.write_text('presets: [design]\n'
                  f'dynamics: {{type: {kind}, members: 3, components: 2}}\n')
  config = load_config(str(path))
  assert config.dynamics.type == kind
  world_model = small_world_model([f'dynamics.type={kind}',
                                   'dynamics.members=3',
                                   'dynamics.components=2'])
  assert type(world_model.dynamics) is cls
  if kind == 'ensemble':
    assert len(world_model.dynamics.members) == 3
  if kind == 'mixture':
    assert world_model.dynamics.num_components == 2


@pytest.mark.parametrize('overrides, names', [
    (['dynamics.type=ensemble', 'dynamics.members=1'], ['dynamics.members']),
    (['dynamics.type=mixture', 'dynamics.components=1'],
     ['dynamics.components']),
    (['dynamics.type=ensemble', 'imagination.sample_dynamics=false'],
     ['dynamics.ensemble_imagination', 'imagination.sample_dynamics']),
    (['dynamics.type=bayesian'], ['dynamics.type', "'ensemble'"]),
    (['dynamics.type=deterministic', 'acting.uncertainty=true'],
     ['acting.uncertainty', 'dynamics.type']),
])
def test_config_refuses_bad_dynamics_settings(overrides, names):
  with pytest.raises(ConfigError) as info:
    load_config(None, ['presets=[design]'] + overrides)
  for name in names:
    assert name in str(info.value)


def test_ensemble_mean_imagination_accepts_mean_dynamics():
  config = load_config(None, ['presets=[design]', 'dynamics.type=ensemble',
                              'dynamics.ensemble_imagination=mean',
                              'imagination.sample_dynamics=false'])
  assert config.dynamics.ensemble_imagination == 'mean'


# ---------------------------------------------------------------------------
# Inside the world model.
# ---------------------------------------------------------------------------


def test_world_model_draws_fresh_bootstraps_per_call():
  world_model = small_world_model(['dynamics.type=ensemble'])
  batch = cartpole_like_batch()
  first = world_model.world_model_loss(batch)[2]
  second = world_model.world_model_loss(batch)[2]
  # Same weights, same batch: only the bootstrap weights changed.
  assert (float(first['world_model/dynamics_loss']) !=
          float(second['world_model/dynamics_loss']))
  np.testing.assert_allclose(float(first['world_model/dynamics_nll']),
                             float(second['world_model/dynamics_nll']),
                             rtol=1e-6)
  seeded = [float(world_model.world_model_loss(batch, seed=_seed())[0])
            for _ in range(2)]
  assert seeded[0] == seeded[1]


@pytest.mark.parametrize('kind', ['deterministic', 'ensemble', 'mixture'])
def test_world_model_loss_falls_on_cartpole_like_batch(kind):
  world_model = small_world_model([f'dynamics.type={kind}'])
  before, after = train_world_model(world_model, cartpole_like_batch())
  assert all(math.isfinite(v) for v in before.values())
  assert all(math.isfinite(v) for v in after.values())
  assert after['loss'] < before['loss'] - 2.0, (before, after)
  assert after['dynamics_mse'] < before['dynamics_mse'] / 2.0, (before, after)
  assert after['dynamics_loss'] < before['dynamics_loss'], (before, after)
