"""Tests for wm_tf/components and wm_tf/distributions.py.

Shapes for batch shapes [B] and [B, T]; densities against float64 NumPy
formulas computed from each component's raw outputs; the actor's
straight-through gradient against the closed-form softmax Jacobian.
"""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from wm_tf import distributions
from wm_tf.components.actor import Actor
from wm_tf.components.dynamics import DYNAMICS, GaussianDynamics
from wm_tf.components.encoder import VectorEncoder
from wm_tf.components.heads import ContinueHead, Decoder, RewardHead, ValueHead
from wm_tf.components.representation import REPRESENTATIONS, MLPBottleneck

D = 8  # latent size
O = 5  # observation size
A = 3  # action size
BATCH_SHAPES = [(4,), (4, 6)]
SMALL = dict(units=32, layers=2)
LOG_2PI = math.log(2.0 * math.pi)


@pytest.fixture(autouse=True)
def _seed():
  keras.utils.set_random_seed(0)


def _states(batch_shape, dim=D, seed=0, scale=1.0):
  rng = np.random.default_rng(seed)
  return tf.constant(scale * rng.normal(size=batch_shape + (dim,)),
                     tf.float32)


def _seed_tensor(a=1, b=2):
  return tf.constant([a, b], tf.int32)


def _normal_log_prob(x, mean, std):
  x, mean, std = (np.asarray(v, np.float64) for v in (x, mean, std))
  return -0.5 * ((x - mean) / std) ** 2 - np.log(std) - 0.5 * LOG_2PI


# ---------------------------------------------------------------------------
# Scalar heads: reward and critic.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('head_cls', [RewardHead, ValueHead])
@pytest.mark.parametrize('batch_shape', BATCH_SHAPES)
def test_scalar_heads_are_unit_normal_per_state(head_cls, batch_shape):
  head = head_cls(**SMALL)
  dist = head(_states(batch_shape))
  assert dist.batch_shape == batch_shape
  assert dist.event_shape == ()
  # The zero-initialised output layer predicts 0 before any training.
  np.testing.assert_array_equal(dist.mean().numpy(), np.zeros(batch_shape))

  # Move the output layer off zero so the check below is not about zeros.
  kernel = head.out.kernel
  kernel.assign(tf.random.normal(kernel.shape))
  dist = head(_states(batch_shape))
  mean = dist.mean().numpy()
  assert np.std(mean) > 0
  np.testing.assert_allclose(dist.stddev().numpy(), np.ones(batch_shape))
  sample = dist.sample(seed=_seed_tensor())
  assert sample.shape == batch_shape
  x = np.random.default_rng(1).normal(size=batch_shape).astype(np.float32)
  log_prob = dist.log_prob(x)
  assert log_prob.shape == batch_shape
  np.testing.assert_allclose(log_prob.numpy(), _normal_log_prob(x, mean, 1.0),
                             rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------
# Continue head.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('batch_shape', BATCH_SHAPES)
def test_continue_head_is_bernoulli(batch_shape):
  head = ContinueHead(**SMALL)
  dist = head(_states(batch_shape, scale=3.0))
  assert dist.batch_shape == batch_shape
  assert dist.event_shape == ()
  sample = dist.sample(seed=_seed_tensor()).numpy()
  assert sample.shape == batch_shape
  assert sample.dtype == np.float32
  assert set(np.unique(sample)) <= {0.0, 1.0}
  logits = dist.logits_parameter().numpy().astype(np.float64)
  for value in (0.0, 1.0):
    x = np.full(batch_shape, value, np.float32)
    log_prob = dist.log_prob(x)
    assert log_prob.shape == batch_shape
    # log sigmoid(l) for 1, log sigmoid(-l) for 0.
    sign = 1.0 if value else -1.0
    np.testing.assert_allclose(log_prob.numpy(),
                               -np.logaddexp(0.0, -sign * logits),
                               rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(dist.mean().numpy(), 1 / (1 + np.exp(-logits)),
                             rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------
# Decoder.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('batch_shape', BATCH_SHAPES)
def test_decoder_is_unit_normal_over_observations(batch_shape):
  decoder = Decoder(O, **SMALL)
  dist = decoder(_states(batch_shape))
  assert dist.batch_shape == batch_shape
  assert dist.event_shape == (O,)
  sample = dist.sample(seed=_seed_tensor())
  assert sample.shape == batch_shape + (O,)
  x = np.random.default_rng(2).normal(size=batch_shape + (O,))
  log_prob = dist.log_prob(x.astype(np.float32))
  assert log_prob.shape == batch_shape
  expected = _normal_log_prob(x, dist.mean().numpy(), 1.0).sum(-1)
  np.testing.assert_allclose(log_prob.numpy(), expected, rtol=1e-5, atol=1e-4)


# ---------------------------------------------------------------------------
# Dynamics.
# ---------------------------------------------------------------------------


def test_dynamics_registry_has_gaussian():
  assert DYNAMICS.get('gaussian') is GaussianDynamics
  with pytest.raises(ValueError, match='gaussian'):
    DYNAMICS.get('rssm')


@pytest.mark.parametrize('batch_shape', BATCH_SHAPES)
@pytest.mark.parametrize('std', ['learned', 'fixed'])
def test_dynamics_is_diagonal_normal_over_latent(batch_shape, std):
  dynamics = GaussianDynamics(D, std=std, fixed_std=0.05, min_std=0.1,
                              max_std=0.7, **SMALL)
  state = _states(batch_shape)
  action = tf.one_hot(np.random.default_rng(3).integers(0, A, batch_shape), A)
  dist = dynamics(state, action)
  assert dist.batch_shape == batch_shape
  assert dist.event_shape == (D,)
  sample = dist.sample(seed=_seed_tensor())
  assert sample.shape == batch_shape + (D,)
  stddev = dist.stddev().numpy()
  assert stddev.shape == batch_shape + (D,)
  if std == 'fixed':
    np.testing.assert_allclose(stddev, 0.05, rtol=1e-6)
  else:
    assert np.all(stddev >= 0.1) and np.all(stddev <= 0.7)
    assert np.std(stddev) > 0  # predicted per entry, not constant
  mean = dist.mean().numpy()
  x = mean + stddev * np.random.default_rng(4).normal(size=mean.shape)
  log_prob = dist.log_prob(x.astype(np.float32))
  assert log_prob.shape == batch_shape
  np.testing.assert_allclose(log_prob.numpy(),
                             _normal_log_prob(x, mean, stddev).sum(-1),
                             rtol=1e-4, atol=1e-3)


def test_dynamics_fixed_std_default_is_design_value():
  """std='fixed' at 1e-4: the NLL is the squared error / (2e-8) + const."""
  dynamics = GaussianDynamics(D, std='fixed', **SMALL)
  dist = dynamics(_states((3,)), tf.one_hot([0, 1, 2], A))
  np.testing.assert_allclose(dist.stddev().numpy(), 1e-4, rtol=1e-6)
  mean = dist.mean().numpy().astype(np.float64)
  delta = 1e-4 * np.random.default_rng(5).normal(size=mean.shape)
  x = (mean + delta).astype(np.float32)
  sq = np.sum((x.astype(np.float64) - mean) ** 2, -1)
  expected = -sq / 2e-8 - D * (math.log(1e-4) + 0.5 * LOG_2PI)
  np.testing.assert_allclose(dist.log_prob(x).numpy(), expected, rtol=1e-3)


def test_dynamics_rejects_unknown_std_mode():
  with pytest.raises(ValueError, match='learned'):
    GaussianDynamics(D, std='adaptive')


# ---------------------------------------------------------------------------
# Representation.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('batch_shape', BATCH_SHAPES)
def test_mlp_representation_is_deterministic_in_unit_box(batch_shape):
  assert REPRESENTATIONS.get('mlp') is MLPBottleneck
  rep = MLPBottleneck(latent_dim=D, units=32, layers=1)
  # Large features would push an unsquashed latent far outside [-1, 1].
  features = _states(batch_shape, dim=16, scale=100.0)
  dist = rep(features)
  assert dist.batch_shape == batch_shape
  assert dist.event_shape == (D,)
  mode = dist.mode().numpy()
  assert mode.shape == batch_shape + (D,)
  assert np.all(np.abs(mode) <= 1.0)
  np.testing.assert_array_equal(dist.sample(seed=_seed_tensor()).numpy(),
                                mode)
  np.testing.assert_array_equal(dist.mean().numpy(), mode)
  assert dist.log_prob(mode).shape == batch_shape
  loss, metrics = rep.auxiliary_loss(features, dist)
  assert float(loss) == 0.0 and metrics == {}


# ---------------------------------------------------------------------------
# Actor, discrete.
# ---------------------------------------------------------------------------


def _assert_one_hot(sample):
  """Each row one-hot, up to float32 rounding of (1 + p) - p.

  `sample + probs - stop_gradient(probs)` rounds: 1 may come out as
  0.99999994. Exactly one-hot would need `sample + (probs - sg(probs))`.
  """
  hot = np.argmax(sample, -1)
  np.testing.assert_allclose(sample, np.eye(sample.shape[-1])[hot], rtol=0,
                             atol=1e-6)


@pytest.mark.parametrize('batch_shape', BATCH_SHAPES)
def test_discrete_actor_samples_one_hot(batch_shape):
  actor = Actor(A, discrete=True, **SMALL)
  dist = actor(_states(batch_shape))
  assert dist.batch_shape == batch_shape
  assert dist.event_shape == (A,)
  sample = dist.sample(seed=_seed_tensor()).numpy()
  assert sample.shape == batch_shape + (A,)
  _assert_one_hot(sample)
  log_prob = dist.log_prob(sample)
  assert log_prob.shape == batch_shape
  logits = dist.logits_parameter().numpy().astype(np.float64)
  log_softmax = logits - np.logaddexp.reduce(logits, -1, keepdims=True)
  np.testing.assert_allclose(log_prob.numpy(),
                             np.sum(sample * log_softmax, -1), rtol=1e-5,
                             atol=1e-6)
  mode = dist.deterministic_action().numpy()
  np.testing.assert_array_equal(mode,
                                np.eye(A)[np.argmax(logits, -1)])


def test_straight_through_samples_follow_probs():
  logits = tf.constant([[2.0, 0.0, -1.0], [-3.0, 0.5, 0.5]])
  dist = distributions.StraightThroughOneHot(logits=logits)
  samples = dist.sample(20_000, seed=_seed_tensor(7, 8)).numpy()
  assert samples.shape == (20_000, 2, 3)
  freq = samples.mean(0)
  probs = tf.nn.softmax(logits).numpy()
  np.testing.assert_allclose(freq, probs, atol=0.015)


@pytest.mark.parametrize('batch_shape', BATCH_SHAPES)
def test_straight_through_gradient_is_softmax_jacobian(batch_shape):
  rng = np.random.default_rng(6)
  logits = tf.Variable(rng.normal(size=batch_shape + (A,)), dtype=tf.float32)
  upstream = rng.normal(size=batch_shape + (A,))
  with tf.GradientTape() as tape:
    dist = distributions.StraightThroughOneHot(logits=logits)
    sample = dist.sample(seed=_seed_tensor())
    loss = tf.reduce_sum(sample * tf.constant(upstream, tf.float32))
  grad = tape.gradient(loss, logits)
  assert grad is not None
  # d loss / d logits = J^T g with J = diag(p) - p p^T (symmetric), i.e.
  # p * (g - <p, g>).
  p = tf.nn.softmax(logits).numpy().astype(np.float64)
  expected = p * (upstream - np.sum(p * upstream, -1, keepdims=True))
  np.testing.assert_allclose(grad.numpy(), expected, rtol=1e-4, atol=1e-6)
  # Forward values stay one-hot despite the gradient trick.
  _assert_one_hot(sample.numpy())


def test_straight_through_gradient_reaches_actor_weights():
  actor = Actor(A, discrete=True, **SMALL)
  state = _states((4,))
  actor(state)
  with tf.GradientTape() as tape:
    sample = actor(state).sample(seed=_seed_tensor())
    loss = tf.reduce_sum(sample * tf.constant([1.0, -2.0, 0.5]))
  grads = tape.gradient(loss, actor.trainable_variables)
  assert all(g is not None for g in grads)
  assert all(float(tf.reduce_max(tf.abs(g))) > 0 for g in grads)


# ---------------------------------------------------------------------------
# Actor, continuous.
# ---------------------------------------------------------------------------

LOW = np.array([-2.0, 0.0, -0.5], np.float32)
HIGH = np.array([2.0, 5.0, 0.5], np.float32)


def _squash(u):
  return LOW + (HIGH - LOW) * (np.tanh(u) + 1.0) / 2.0


def test_continuous_actor_requires_bounds():
  with pytest.raises(ValueError, match='low and high'):
    Actor(A, discrete=False, **SMALL)


@pytest.mark.parametrize('batch_shape', BATCH_SHAPES)
def test_continuous_actor_samples_within_bounds(batch_shape):
  actor = Actor(A, discrete=False, low=LOW, high=HIGH, min_std=0.2,
                max_std=0.9, **SMALL)
  state = _states(batch_shape)
  dist = actor(state)
  assert dist.batch_shape == batch_shape
  assert dist.event_shape == (A,)
  sample = dist.sample(seed=_seed_tensor()).numpy()
  assert sample.shape == batch_shape + (A,)
  assert np.all(sample >= LOW) and np.all(sample <= HIGH)
  log_prob = dist.log_prob(sample)
  assert log_prob.shape == batch_shape
  assert np.all(np.isfinite(log_prob.numpy()))

  # deterministic_action = the bijection applied to the pre-tanh mean, which
  # is the first half of the actor's output layer.
  raw = actor.out(actor.mlp(state)).numpy().astype(np.float64)
  np.testing.assert_allclose(dist.deterministic_action().numpy(),
                             _squash(raw[..., :A]), rtol=1e-5, atol=1e-5)


def test_continuous_samples_stay_in_bounds_when_saturated():
  loc = tf.constant([[30.0, -30.0, 30.0], [-30.0, 30.0, 0.0]])
  dist = distributions.SquashedNormal(loc, tf.fill([2, 3], 0.5), LOW, HIGH)
  samples = dist.sample(1000, seed=_seed_tensor()).numpy()
  assert np.all(samples >= LOW) and np.all(samples <= HIGH)
  np.testing.assert_allclose(dist.deterministic_action().numpy(),
                             [[2.0, 0.0, 0.5], [-2.0, 5.0, 0.0]], atol=1e-5)


def test_squashed_normal_log_prob_matches_change_of_variables():
  rng = np.random.default_rng(9)
  loc = rng.normal(size=(6, A))
  scale = rng.uniform(0.2, 1.0, size=(6, A))
  u = rng.normal(size=(6, A))  # pre-tanh points, kept away from the bounds
  x = _squash(u)
  dist = distributions.SquashedNormal(tf.constant(loc, tf.float32),
                                      tf.constant(scale, tf.float32), LOW,
                                      HIGH)
  # log p(x) = log N(u) - log|dx/du|, dx/du = (high - low) / 2 (1 - tanh^2).
  half = (HIGH.astype(np.float64) - LOW) / 2.0
  expected = np.sum(_normal_log_prob(u, loc, scale)
                    - np.log(half * (1.0 - np.tanh(u) ** 2)), -1)
  np.testing.assert_allclose(dist.log_prob(x.astype(np.float32)).numpy(),
                             expected, rtol=1e-3, atol=1e-3)
  # The entropy is documented as the pre-tanh Normal's.
  np.testing.assert_allclose(
      dist.entropy().numpy(),
      np.sum(0.5 * (1.0 + LOG_2PI) + np.log(scale), -1), rtol=1e-5)


def test_squashed_normal_log_prob_finite_at_bounds():
  dist = distributions.SquashedNormal(tf.zeros([2, A]), tf.fill([2, A], 0.3),
                                      LOW, HIGH)
  at_bounds = np.stack([LOW, HIGH])
  log_prob = dist.log_prob(at_bounds).numpy()
  assert log_prob.shape == (2,)
  assert np.all(np.isfinite(log_prob))
  # Mixed: some coordinates on a bound, some inside.
  mixed = np.stack([[LOW[0], 1.0, HIGH[2]], [0.0, HIGH[1], LOW[2]]])
  assert np.all(np.isfinite(dist.log_prob(mixed.astype(np.float32)).numpy()))
  # Its gradient with respect to the parameters is finite as well.
  loc = tf.Variable(tf.zeros([2, A]))
  with tf.GradientTape() as tape:
    value = distributions.SquashedNormal(loc, tf.fill([2, A], 0.3), LOW,
                                         HIGH).log_prob(at_bounds)
  assert np.all(np.isfinite(tape.gradient(value, loc).numpy()))


def test_philox_normal_matches_tfp_density_and_moments():
  """distributions.Normal: TFP's log_prob, N(loc, scale) samples, under XLA."""
  loc = tf.constant([[-1.0, 0.0, 2.0]])
  scale = tf.constant([[0.5, 1.0, 3.0]])
  dist = distributions.Normal(loc, scale)
  x = tf.constant([[0.3, -0.7, 5.0]])
  np.testing.assert_allclose(
      dist.log_prob(x),
      -0.5 * ((x - loc) / scale) ** 2 - np.log(scale) - 0.5 * np.log(2 * np.pi),
      rtol=1e-6)

  @tf.function(jit_compile=True)
  def draw(seed):
    return dist.sample(20000, seed=seed)

  samples = draw(tf.constant([3, 4], tf.int32)).numpy()
  assert samples.shape == (20000, 1, 3)
  np.testing.assert_allclose(samples.mean(0), loc, atol=4 * 3.0 / 141)
  np.testing.assert_allclose(samples.std(0), scale, rtol=0.03)
  # Stateless: the same seed gives the same draw (XLA's Philox stream
  # differs from the TF kernel's, so eager draws are not compared).
  np.testing.assert_array_equal(draw(tf.constant([3, 4], tf.int32)), samples)
  assert not np.allclose(draw(tf.constant([3, 5], tf.int32)), samples)


def test_philox_normal_sample_is_reparameterized():
  """d sample / d loc = 1 and d sample / d scale = the unit noise."""
  loc, scale = tf.Variable([0.5, -0.5]), tf.Variable([2.0, 0.25])
  with tf.GradientTape(persistent=True) as tape:
    sample = distributions.Normal(loc, scale).sample(
        seed=tf.constant([1, 2], tf.int32))
    first, second = sample[0], sample[1]
  np.testing.assert_allclose(tape.gradient(first, loc), [1.0, 0.0])
  noise = (sample - loc) / scale
  np.testing.assert_allclose(tape.gradient(second, scale),
                             [0.0, noise[1]], rtol=1e-6)


# ---------------------------------------------------------------------------
# get_config / from_config.
# ---------------------------------------------------------------------------

F = 6  # feature size

# (class, constructor arguments, input shapes): every Keras component.
CONFIGURED = (
    [(VectorEncoder, dict(SMALL, activation='relu'), [(O,)]),
     (RewardHead, dict(SMALL, activation='silu', distribution='normal'),
      [(D,)]),
     (ValueHead, dict(SMALL, activation='gelu', distribution='twohot'),
      [(D,)]),
     (ContinueHead, dict(SMALL, activation='tanh'), [(D,)]),
     (Decoder, dict(SMALL, activation='silu', observation_dim=O), [(D,)]),
     (Actor, dict(SMALL, activation='silu', action_dim=A, discrete=True,
                  low=None, high=None, min_std=0.1, max_std=1.0), [(D,)]),
     (Actor, dict(SMALL, activation='silu', action_dim=2, discrete=False,
                  low=[-1.0, -2.0], high=[1.0, 0.5], min_std=0.2,
                  max_std=0.9), [(D,)])]
    + [(REPRESENTATIONS.get(kind), arguments, [(F,)]) for kind, arguments in (
        ('mlp', dict(latent_dim=D, **SMALL, activation='silu')),
        ('none', dict(feature_dim=F)),
        ('mlp_autoencoder', dict(latent_dim=D, feature_dim=F, **SMALL,
                                 activation='silu', aux_scale=0.5)),
        ('vae', dict(latent_dim=D, **SMALL, activation='silu', beta=0.3)),
        ('contrastive', dict(latent_dim=D, **SMALL, activation='silu',
                             temperature=0.2, projection_dim=5,
                             aux_scale=2.0)),
        ('vq', dict(latent_dim=D, **SMALL, activation='silu',
                    codebook_size=7, codebook_groups=2, commitment=0.5)),
        ('rssm', dict(latent_dim=D, deter_dim=4, action_dim=A, **SMALL,
                      activation='silu', free_nats=0.5, beta=0.7,
                      kl_balance=0.6, latent='gaussian', classes=32,
                      unimix=0.01, dyn_scale=0.5, rep_scale=0.1,
                      unroll=True)),
        ('rssm', dict(latent_dim=D, deter_dim=4, action_dim=A, **SMALL,
                      activation='silu', free_nats=0.5, beta=None,
                      kl_balance=0.8, latent='categorical', classes=3,
                      unimix=0.02, dyn_scale=0.4, rep_scale=0.2,
                      unroll=False)))]
    + [(DYNAMICS.get(kind), dict(arguments, latent_dim=D, **SMALL,
                                 activation='silu'), [(D,), (A,)])
       for kind, arguments in (
           ('gaussian', dict(std='learned', fixed_std=1e-3, min_std=0.05,
                             max_std=0.8)),
           ('deterministic', {}),
           ('ensemble', dict(std='fixed', fixed_std=0.1, min_std=0.01,
                             max_std=1.0, members=3, imagination='mean',
                             bootstrap=False)),
           ('mixture', dict(std='learned', fixed_std=1e-4, min_std=0.01,
                            max_std=1.0, components=2)))])


def _summary(distribution) -> list:
  """What a component's output (a distribution or features) says, as arrays."""
  if isinstance(distribution, tf.Tensor):
    return [distribution.numpy()]
  out = []
  for statistic in ('mean', 'stddev', 'deterministic_action'):
    method = getattr(distribution, statistic, None)
    if method is None:
      continue
    try:
      out.append(np.asarray(method()))
    except NotImplementedError:
      pass
  assert out, f'{type(distribution).__name__} gives no statistic'
  return out


def test_every_registered_type_has_a_get_config_case():
  covered = {cls for cls, _, _ in CONFIGURED}
  registered = ({REPRESENTATIONS.get(k) for k in REPRESENTATIONS.names()}
                | {DYNAMICS.get(k) for k in DYNAMICS.names()})
  assert registered <= covered, registered - covered


@pytest.mark.parametrize('cls, arguments, shapes', CONFIGURED,
                         ids=lambda x: x.__name__ if isinstance(x, type)
                         else None)
def test_from_config_rebuilds_an_equivalent_layer(cls, arguments, shapes):
  from wm_tf.agent.builder import check_arguments
  rng = np.random.default_rng(3)
  inputs = [tf.constant(rng.normal(size=(4,) + s), tf.float32)
            for s in shapes]
  layer = cls(**arguments, name='original')
  expected = _summary(layer(*inputs))
  config = layer.get_config()
  # Exactly the constructor's arguments, with the values it was given.
  own = {k: v for k, v in config.items()
         if k not in ('name', 'trainable', 'dtype')}
  check_arguments(cls, own)
  assert own == arguments
  copy = cls.from_config(config)
  assert copy.name == 'original' and copy.get_config() == config
  copy(*inputs)
  assert len(copy.weights) == len(layer.weights)
  copy.set_weights(layer.get_weights())
  for want, got in zip(expected, _summary(copy(*inputs))):
    np.testing.assert_array_equal(got, want)


def test_from_config_keeps_the_dtype_policy():
  layer = ValueHead(**SMALL, name='critic', dtype='mixed_bfloat16')
  copy = ValueHead.from_config(layer.get_config())
  assert copy.dtype_policy.name == 'mixed_bfloat16'
  assert copy.get_config() == layer.get_config()
