"""Tests for the learner's alternatives (wm_tf/agent/learner.py, targets.py,
optimizers.py, imagination.py modes) and their wiring in the builder.

Reference numbers come from NumPy (real-sequence lambda returns, EMA closed
form); which variables move is checked bit for bit. Most tests run the
tf.functions eagerly (no tracing: faster for a step or two); one case of
the matrix compiles with XLA.
"""

import typing

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import SMALL_OVERRIDES, make_batch
from wm_tf import config as config_lib
from wm_tf import losses
from wm_tf.agent.builder import build_agent
from wm_tf.agent.imagination import IMAGINATION_MODES
from wm_tf.agent.learner import Updates
from wm_tf.agent.mpc import PLANNERS
from wm_tf.agent.optimizers import OPTIMIZER_LAYOUTS
from wm_tf.agent.policy import FALLBACKS, UncertaintyCalibration
from wm_tf.agent.targets import WORLD_MODEL_TARGETS
from wm_tf.agent.warmup import WARMUPS
from wm_tf.config import ConfigError, load_config
from wm_tf.runtime.environments import EnvSpec

CARTPOLE = EnvSpec('CartPole-v1', observations=4, action_dim=2,
                   discrete=True)
PENDULUM = EnvSpec('Pendulum-v1', observations=3, action_dim=1,
                   discrete=False, low=(-2.0,), high=(2.0,))


@pytest.fixture
def eager():
  """tf.functions run eagerly: no tracing, so small tests stay fast."""
  tf.config.run_functions_eagerly(True)
  yield
  tf.config.run_functions_eagerly(False)


def _agent(overrides, spec, seed=0):
  keras.utils.set_random_seed(seed)
  return build_agent(load_config(None, list(SMALL_OVERRIDES) + overrides),
                     spec)


def _inner(head):
  """The Keras head under a symlog wrapper, or the head itself."""
  return getattr(head, 'inner', head)


def _randomize_output(head, rng, bias=1.0):
  out = _inner(head).out
  out.kernel.assign(rng.normal(size=out.kernel.shape).astype(np.float32))
  out.bias.assign(np.full(out.bias.shape, bias, np.float32))


def _live(agent, seed=0):
  """Non-zero reward head and critics (they start with zero outputs)."""
  rng = np.random.default_rng(seed)
  _randomize_output(agent.world_model.reward, rng)
  _randomize_output(agent.critic, rng, 0.5)
  _randomize_output(agent.slow_critic, rng, -0.5)
  return agent


def _snapshot(variables):
  return [v.numpy().copy() for v in variables]


def _moved(before, variables):
  """Paths of the variables that changed."""
  return {getattr(v, 'path', v.name) for b, v in zip(before, variables)
          if not np.array_equal(b, v.numpy())}


def _state(agent):
  """Trainable variables of each part."""
  return {'world_model': agent.world_model.trainable_variables,
          'actor': agent.actor.trainable_variables,
          'critic': agent.critic.trainable_variables}


def _snapshots(agent):
  return {k: _snapshot(v) for k, v in _state(agent).items()}


def _parts_moved(agent, before):
  return {k for k, v in _state(agent).items() if _moved(before[k], v)}


def _episodic_batch(spec, seed, batch_size=4, length=8):
  """A replay-like batch: after a terminal step the next one is_first."""
  batch = {k: v.numpy() for k, v in
           make_batch(spec, np.random.default_rng(seed), batch_size, length,
                      first_prob=0.15, terminal_prob=0.15).items()}
  is_first, is_terminal = batch['is_first'], batch['is_terminal']
  is_first[:, 1:] |= is_terminal[:, :-1]
  is_terminal &= ~is_first
  batch['reward'] = np.where(is_first, 0.0, batch['reward']).astype(
      np.float32)
  batch['is_last'] = is_terminal.copy()
  return {k: tf.constant(v) for k, v in batch.items()}


# ---------------------------------------------------------------------------
# Registries and config.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('registry, section, field', [
    (IMAGINATION_MODES, config_lib.ImaginationConfig, 'mode'),
    (WARMUPS, config_lib.WarmupConfig, 'type'),
    (OPTIMIZER_LAYOUTS, config_lib.OptimizersConfig, 'type'),
    (WORLD_MODEL_TARGETS, config_lib.WorldModelConfig, 'target'),
    (PLANNERS, config_lib.MPCConfig, 'method'),
    (FALLBACKS, config_lib.ActingConfig, 'fallback'),
])
def test_registry_keys_are_the_config_choices(registry, section, field):
  allowed = typing.get_args(typing.get_type_hints(section)[field])
  assert registry.names() == tuple(sorted(allowed))


@pytest.mark.parametrize('overrides, message', [
    (['acting.uncertainty=true', 'imagination.mode=mpc'],
     "acting.uncertainty=true and imagination.mode='mpc' conflict"),
    (['acting.uncertainty=true', 'dynamics.std=fixed'],
     "acting.uncertainty=true and dynamics.std='fixed'"),
    (['acting.uncertainty=true', 'dynamics.type=deterministic'],
     "acting.uncertainty=true and dynamics.type='deterministic' conflict"),
    (['optimizers.type=single', 'world_model.target=ema'],
     "optimizers.type='single' and world_model.target='ema' conflict"),
    (['mpc.elites=300', 'mpc.samples=64'],
     'mpc.elites and mpc.samples conflict'),
    (['imagination.real_ratio=2'], "'imagination.real_ratio' has value 2.0"),
    (['world_model.target_tau=0'], "'world_model.target_tau' has value 0.0"),
    (['world_model.target=mirror'],
     "'world_model.target' has value 'mirror'; allowed: one of 'none', "
     "'copy', 'ema'"),
    (['optimizers.type=shared'], "allowed: one of 'separate', 'single', "
     "'masked'"),
])
def test_conflicting_options_refused_at_start(overrides, message):
  with pytest.raises(ConfigError, match=message):
    load_config(None, overrides)


# ---------------------------------------------------------------------------
# Target world models.
# ---------------------------------------------------------------------------


def test_copy_target_frozen_between_refreshes(cartpole_spec, eager):
  agent = _agent(['world_model.target=copy', 'world_model.target_every=3'],
                 cartpole_spec)
  learner = agent.learner
  online, target = agent.world_model.variables, learner.target.model.variables
  assert learner.target.model is not agent.world_model
  initial = _snapshot(target)
  np.testing.assert_equal(initial, _snapshot(online))  # starts as a copy
  rng = np.random.default_rng(0)
  for step in range(1, 6):
    learner.train_world_model(make_batch(cartpole_spec, rng))
    if step < 3:
      assert not _moved(initial, target)
      assert _moved(initial, online)
    if step == 3:  # refreshed right after the 3rd update
      np.testing.assert_equal(_snapshot(target), _snapshot(online))
      refreshed = _snapshot(target)
    if step > 3:
      assert not _moved(refreshed, target)
      assert _moved(refreshed, online)


def test_ema_target_follows_closed_form(cartpole_spec, eager):
  tau = 0.3
  agent = _agent(['world_model.target=ema', f'world_model.target_tau={tau}'],
                 cartpole_spec)
  learner = agent.learner
  online, target = agent.world_model.variables, learner.target.model.variables
  for v in target:  # start away from the online weights
    v.assign(v * 0.5 - 0.25)
  target_0 = _snapshot(target)
  onlines = []
  rng = np.random.default_rng(1)
  k = 4
  for _ in range(k):
    learner.train_world_model(make_batch(cartpole_spec, rng))
    onlines.append(_snapshot(online))  # online_j, after update j
  for i, v in enumerate(target):
    # target_k = (1 - tau)^k target_0 + sum_j tau (1 - tau)^(k-j) online_j.
    want = (1 - tau) ** k * target_0[i] + sum(
        tau * (1 - tau) ** (k - j) * onlines[j - 1][i]
        for j in range(1, k + 1))
    np.testing.assert_allclose(v.numpy(), want, rtol=1e-5, atol=1e-6,
                               err_msg=v.path)


def test_actor_imagines_in_target_model(cartpole_spec, eager):
  """With a target, imagined rewards come from the target's reward head."""
  agent = _live(_agent(['world_model.target=copy',
                        'world_model.target_every=1000'], cartpole_spec))
  learner = agent.learner
  batch = make_batch(cartpole_spec, np.random.default_rng(2))
  start = tf.reshape(agent.world_model.encode(batch), [-1, 8])
  alive = tf.ones([start.shape[0]])
  imagined_reward = lambda: float(learner.actor_critic.loss(
      learner.target.model, start, alive, tf.constant([1, 1]))[1][
          'imagination/reward_mean'])
  reward_before = imagined_reward()
  # Changing the online reward head does not change imagination...
  _randomize_output(agent.world_model.reward, np.random.default_rng(9), 5.0)
  assert imagined_reward() == reward_before
  # ...changing the target's does.
  _randomize_output(learner.target.model.reward, np.random.default_rng(9),
                    5.0)
  assert imagined_reward() != reward_before


# ---------------------------------------------------------------------------
# Optimizer layouts.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('layout', ['separate', 'masked', 'single'])
def test_actor_loss_reaches_world_model_only_with_single(layout,
                                                         cartpole_spec,
                                                         eager):
  """An actor-only update: only 'single' lets it change the world model."""
  agent = _live(_agent([f'optimizers.type={layout}',
                        'optimizers.world_model.learning_rate=1e-2',
                        'optimizers.actor.learning_rate=1e-2'],
                       cartpole_spec))
  before = _snapshots(agent)
  update = agent.learner.update_function(
      Updates(world_model=False, actor=True, critic=False))
  metrics = update(make_batch(cartpole_spec, np.random.default_rng(3)),
                   tf.constant([3, 4]))
  assert float(metrics['learner/nonfinite']) == 0.0
  moved = _parts_moved(agent, before)
  if layout == 'single':
    assert moved == {'actor', 'world_model'}
    wm_moved = _moved(before['world_model'],
                      agent.world_model.trainable_variables)
    # Through imagination: dynamics, reward and continue heads.
    assert any(p.startswith('dynamics/') for p in wm_moved), wm_moved
    assert any(p.startswith('reward/') for p in wm_moved), wm_moved
    # Not the encoder: start states carry no gradient.
    assert not any(p.startswith('encoder/') for p in wm_moved), wm_moved
  else:
    assert moved == {'actor'}


@pytest.mark.parametrize('layout', ['masked', 'single'])
def test_one_optimizer_steps_once_per_update(layout, cartpole_spec, eager):
  agent = _live(_agent([f'optimizers.type={layout}'], cartpole_spec))
  learner = agent.learner
  optimizers = learner.layout.optimizers
  assert (optimizers['world_model'] is optimizers['actor'] is
          optimizers['critic'])
  # The learners step no optimizer of their own in a joint layout.
  assert agent.world_model.optimizer is None
  assert learner.actor_critic.actor_optimizer is None
  before = _snapshots(agent)
  learner.train(make_batch(cartpole_spec, np.random.default_rng(4)),
                tf.constant([5, 6]))
  assert int(optimizers['world_model'].iterations.numpy()) == 1
  assert _parts_moved(agent, before) == {'world_model', 'actor', 'critic'}


# ---------------------------------------------------------------------------
# Dyna: real-sequence targets.
# ---------------------------------------------------------------------------


def numpy_real_lambda_returns(reward, is_first, is_terminal, values, gamma,
                              lambda_):
  """Lambda returns computed separately inside each episode segment.

  A sequence splits into segments at its is_first steps. Inside a segment
  with steps start ... end-1, over its transitions t -> t+1,
      R_t = r_{t+1} + gamma (1 - term_{t+1}) ((1 - lambda) V_{t+1}
                                              + lambda R_{t+1}),
  bootstrapped with R_{end-1} = V_{end-1}. The last state of a segment has
  no transition in the sequence, so no target.

  Returns:
    (R [B, T-1] with NaN where s_t has no target, mask of the targets).
  """
  b, length = reward.shape
  out = np.full((b, length - 1), np.nan)
  for i in range(b):
    starts = [0] + [t for t in range(1, length) if is_first[i, t]]
    ends = starts[1:] + [length]
    for start, end in zip(starts, ends):
      later = values[i, end - 1]
      for t in reversed(range(start, end - 1)):
        discount = gamma * (1.0 - is_terminal[i, t + 1])
        later = reward[i, t + 1] + discount * (
            (1 - lambda_) * values[i, t + 1] + lambda_ * later)
        if not is_terminal[i, t]:
          out[i, t] = later
  return out, ~np.isnan(out)


@pytest.mark.parametrize('symlog', [False, True])
def test_dyna_real_ratio_one_critic_targets_are_numpy_real_returns(
    symlog, cartpole_spec, eager):
  gamma, lambda_ = 0.9, 0.8
  agent = _live(_agent([
      'imagination.mode=dyna', 'imagination.real_ratio=1',
      f'imagination.symlog={str(symlog).lower()}',
      f'imagination.gamma={gamma}', f'returns.lambda={lambda_}'],
      cartpole_spec))
  learner = agent.learner
  batch = _episodic_batch(cartpole_spec, 5)
  latent = agent.world_model.world_model_loss(batch)[1]
  values = agent.slow_critic(latent).mean().numpy()
  want, valid = numpy_real_lambda_returns(
      batch['reward'].numpy(), batch['is_first'].numpy(),
      batch['is_terminal'].numpy(), values, gamma, lambda_)
  assert valid.sum() >= 10 and (~valid).sum() >= 2  # boundaries exercised

  targets, weights, _ = learner.actor_critic.real_value_targets(batch, latent)
  np.testing.assert_array_equal(weights.numpy() > 0, valid)
  np.testing.assert_allclose(targets.numpy()[valid], want[valid], rtol=1e-5,
                             atol=1e-5)

  # The whole update: the critic loss is the real-data regression alone
  # (the critic's prediction lives in symlog space when symlog is on).
  mean = _inner(agent.critic)(latent[:, :-1]).mean().numpy()
  goal = np.where(valid, want, 0.0)
  if symlog:
    goal = np.sign(goal) * np.log1p(np.abs(goal))
  log_prob = -0.5 * (goal - mean) ** 2 - 0.5 * np.log(2 * np.pi)
  want_loss = -np.mean(np.where(valid, log_prob, 0.0))
  metrics = learner.train(batch, tf.constant([7, 8]))
  assert float(metrics['critic/real_ratio']) == 1.0
  np.testing.assert_allclose(float(metrics['critic/loss']), want_loss,
                             rtol=1e-5)
  np.testing.assert_allclose(float(metrics['critic/real_loss']), want_loss,
                             rtol=1e-5)
  np.testing.assert_allclose(float(metrics['actor/loss']),
                             float(metrics['actor/real_loss']), rtol=1e-6)


@pytest.mark.parametrize('weighting', ['signed', 'positive'])
def test_advantage_weighted_nll_matches_numpy(weighting):
  rng = np.random.default_rng(3)
  log_prob = tf.constant(rng.normal(size=(3, 5)), tf.float32)
  advantage = rng.normal(size=(3, 5)).astype(np.float32)
  entropy = rng.normal(size=(3, 5)).astype(np.float32)
  weights = (rng.random((3, 5)) < 0.7).astype(np.float32)
  assert (advantage < 0).any() and (advantage > 0).any()
  g = advantage if weighting == 'signed' else np.maximum(advantage, 0.0)
  want = -np.mean(weights * (log_prob.numpy() * g + 0.1 * entropy))
  with tf.GradientTape() as tape:
    tape.watch(log_prob)
    got = losses.advantage_weighted_nll(log_prob, advantage, entropy,
                                        weights, 0.1, weighting)
  np.testing.assert_allclose(float(got), want, rtol=1e-6)
  # d loss / d log_prob = -w g / N: with 'positive', actions worse than
  # expected get no gradient at all (nothing pushes their density down).
  grad = tape.gradient(got, log_prob).numpy()
  np.testing.assert_allclose(grad, -weights * g / g.size, rtol=1e-6)
  if weighting == 'positive':
    assert np.all(grad[advantage < 0] == 0.0)
  with pytest.raises(ValueError, match="allowed: signed, positive"):
    losses.advantage_weighted_nll(log_prob, advantage, entropy, weights,
                                  0.1, 'clipped')


def test_dyna_real_actor_term_uses_the_configured_weighting(eager):
  """The real actor term equals the NumPy formula over the batch's states."""
  agent = _live(_agent(['imagination.mode=dyna', 'imagination.real_ratio=1'],
                       PENDULUM))
  learner = agent.learner
  assert learner.actor_critic.real_actor_advantage == 'positive'  # default
  batch = _episodic_batch(PENDULUM, 4)
  latent = agent.world_model.world_model_loss(batch)[1]
  targets, weights, values = learner.actor_critic.real_value_targets(
      batch, latent)
  policy = agent.actor(latent[:, :-1])
  log_prob = policy.log_prob(
      tf.cast(batch['action'], tf.float32)[:, :-1]).numpy()
  advantage = (targets.numpy() - values.numpy()[:, :-1]) / 2.0
  assert (advantage[weights.numpy() > 0] < 0).any()
  want = -np.mean(weights.numpy() * (
      log_prob * np.maximum(advantage, 0.0) +
      learner.actor_critic.settings.entropy * policy.entropy().numpy()))
  terms, _ = learner.actor_critic.real_loss_terms(batch, latent, 2.0)
  np.testing.assert_allclose(float(terms['actor_real']), want, rtol=1e-5)


def test_signed_real_actor_term_refused_for_continuous_actions():
  overrides = ['imagination.mode=dyna',
               'imagination.real_actor_advantage=signed']
  with pytest.raises(ConfigError, match=(
      r"imagination.real_actor_advantage='signed' and imagination.mode="
      r"'dyna' conflict with the continuous action space of "
      r"env.id='Pendulum-v1'.*Allowed for continuous actions: 'positive'")):
    _agent(overrides, PENDULUM)
  # Discrete actions keep it (configs/cartpole.yaml measured it that way),
  # and so do continuous ones when no real actor term is mixed in.
  assert _agent(overrides, CARTPOLE).learner.actor_critic.real_actor_advantage \
      == 'signed'
  _agent(overrides + ['imagination.real_ratio=0'], PENDULUM)


def test_uncertainty_calibration_is_a_running_numpy_quantile():
  rng = np.random.default_rng(5)
  calibration = UncertaintyCalibration(0.9, decay=0.75)
  assert float(calibration.threshold) == np.inf  # nothing flagged yet

  def numpy_quantile(u, valid):
    kept = np.sort(u[valid])
    return kept[int(0.9 * (kept.size - 1))]

  u1 = rng.random((4, 9)).astype(np.float32)
  valid1 = rng.random((4, 9)) < 0.6
  u1[~valid1] = 50.0  # would be the top ranks if they were counted
  first = numpy_quantile(u1, valid1)
  calibration.update(tf.constant(u1), tf.constant(valid1))
  np.testing.assert_allclose(float(calibration.threshold), first, rtol=1e-6)

  u2 = rng.random((4, 9)).astype(np.float32) * 3.0
  valid2 = np.ones((4, 9), bool)
  want = 0.75 * first + 0.25 * numpy_quantile(u2, valid2)
  calibration.update(tf.constant(u2), tf.constant(valid2))
  np.testing.assert_allclose(float(calibration.threshold), want, rtol=1e-6)

  # A batch with nothing valid leaves the threshold alone.
  calibration.update(tf.constant(u2), tf.zeros([4, 9], tf.bool))
  np.testing.assert_allclose(float(calibration.threshold), want, rtol=1e-6)
  # The ranges are the config's rules (the calibration trusts its arguments).
  with pytest.raises(ConfigError, match=r'acting.uncertainty_quantile.*'
                     r'allowed: a number in \(0, 1\)'):
    load_config(None, ['acting.uncertainty_quantile=1'])
  with pytest.raises(ConfigError, match=r'acting.uncertainty_decay.*'
                     r'allowed: a number in \[0, 1\)'):
    load_config(None, ['acting.uncertainty_decay=1'])


def test_uncertainty_decay_comes_from_the_config():
  agent = _agent(['acting.uncertainty=true', 'acting.uncertainty_decay=0.5'],
                 CARTPOLE)
  assert agent.learner.uncertainty_calibration.decay == 0.5
  with pytest.raises(ConfigError, match='acting.uncertainty_decay'):
    _agent(['acting.uncertainty=true', 'acting.uncertainty_decay=1'],
           CARTPOLE)


def test_world_model_update_calibrates_the_acting_threshold(eager):
  """After one update the policy's threshold is the batch's q-quantile of
  u(s_t, a_t) over its real transitions, in the updated dynamics."""
  agent = _agent(['acting.uncertainty=true', 'acting.uncertainty_quantile=0.8'],
                 CARTPOLE)
  learner, policy = agent.learner, agent.policy
  assert policy.uncertainty_threshold is (
      learner.uncertainty_calibration.threshold)
  batch = _episodic_batch(CARTPOLE, 11, batch_size=6, length=10)
  latent = agent.world_model.world_model_loss(batch)[1]  # before the update
  metrics = learner.train_world_model(batch)
  u = policy.uncertainty(latent[:, :-1], batch['action'][:, :-1]).numpy()
  valid = ~batch['is_first'].numpy()[:, 1:]
  assert 10 < valid.sum() < valid.size  # episode boundaries are skipped
  kept = np.sort(u[valid])
  want = kept[int(0.8 * (kept.size - 1))]
  np.testing.assert_allclose(float(policy.uncertainty_threshold), want,
                             rtol=1e-5)
  np.testing.assert_allclose(float(metrics['learner/uncertainty_threshold']),
                             want, rtol=1e-5)
  np.testing.assert_allclose(float(metrics['learner/uncertain_fraction']),
                             np.mean(u[valid] > want), rtol=1e-6)
  # Acting on the batch's own states flags about 1 - q of them.
  flat = tf.reshape(latent[:, :-1], [-1, latent.shape[-1]])
  actions = tf.reshape(batch['action'][:, :-1], [flat.shape[0], -1])
  flagged = np.mean(policy.uncertainty(flat, actions).numpy()[valid.ravel()]
                    > want)
  assert 0.1 <= flagged <= 0.3


# ---------------------------------------------------------------------------
# Non-finite guard.
# ---------------------------------------------------------------------------


def _all_optimizer_steps(learner):
  return [int(o.iterations.numpy()) for o in (
      learner.world_model.optimizer, learner.actor_critic.actor_optimizer,
      learner.actor_critic.critic_optimizer)]


def test_nonfinite_batch_skips_updates(cartpole_spec, eager):
  agent = _live(_agent([], cartpole_spec))
  learner = agent.learner
  everything = (agent.world_model.trainable_variables +
                agent.actor.variables + agent.critic.variables +
                [learner.actor_critic.return_scale])
  rng = np.random.default_rng(6)

  nan_obs = make_batch(cartpole_spec, rng)
  nan_obs['observation'] = tf.tensor_scatter_nd_update(
      nan_obs['observation'], [[1, 3, 2]], [np.nan])
  before = _snapshot(everything)
  metrics = learner.train(nan_obs, tf.constant([1, 2]))
  assert float(metrics['learner/nonfinite']) == 1.0
  assert not _moved(before, everything)  # nothing applied, scale kept
  assert _all_optimizer_steps(learner) == [0, 0, 0]
  assert np.isfinite(learner.actor_critic.return_scale.numpy())

  # A NaN reward poisons only the world-model loss: actor and critic,
  # which imagine from finite latents, still update.
  nan_reward = make_batch(cartpole_spec, rng)
  nan_reward['reward'] = tf.fill(nan_reward['reward'].shape, np.nan)
  before = _snapshots(agent)
  metrics = learner.train(nan_reward, tf.constant([1, 3]))
  assert float(metrics['learner/nonfinite']) == 1.0
  assert _all_optimizer_steps(learner) == [0, 1, 1]
  assert _parts_moved(agent, before) == {'actor', 'critic'}

  before = _snapshots(agent)
  metrics = learner.train(make_batch(cartpole_spec, rng), tf.constant([1, 4]))
  assert float(metrics['learner/nonfinite']) == 0.0
  assert _all_optimizer_steps(learner) == [1, 2, 2]
  assert _parts_moved(agent, before) == {'world_model', 'actor', 'critic'}


# ---------------------------------------------------------------------------
# Matrix: every type of every family through a few train steps.
# ---------------------------------------------------------------------------

MPC_SMALL = ['mpc.samples=8', 'mpc.horizon=2', 'mpc.iterations=2',
             'mpc.elites=2']

# Together the cases run each type of each family at least once.
CASES = {
    'backprop-simple-separate-copy': (
        CARTPOLE,
        ['warmup.type=simple', 'warmup.steps=10', 'world_model.target=copy',
         'world_model.target_every=1']),
    'dyna-gradual-single-none-uncertain-symlog': (
        CARTPOLE,
        ['imagination.mode=dyna', 'warmup.type=gradual', 'warmup.steps=100',
         'optimizers.type=single', 'acting.uncertainty=true',
         'acting.uncertainty_quantile=0.5', 'imagination.symlog=true']),
    'mpc-phased-masked-ema-twohot': (
        CARTPOLE,
        ['critic.distribution=twohot', 'heads.reward.distribution=twohot',
         'imagination.mode=mpc', 'mpc.method=cem', 'warmup.type=phased',
         'warmup.phases=[{end_step: 10, world_model_updates: 1, '
         'critic_updates: 1}]', 'optimizers.type=masked',
         'world_model.target=ema', 'world_model.target_tau=0.5'] + MPC_SMALL),
    'pendulum-mpcfallback-random-shooting-loop': (
        PENDULUM,
        ['warmup.type=simple', 'warmup.steps=10', 'world_model.target=ema',
         'imagination.unroll=false',
         'acting.uncertainty=true', 'acting.fallback=mpc',
         'acting.uncertainty_reference=absolute',
         'acting.uncertainty_threshold=0.01',
         'mpc.method=random_shooting'] + MPC_SMALL),
}

# The parts each warmup updates at env step 5 (before its end, 10 or 100)
# and at env step 200 (after it).
EARLY_PARTS = {'simple': {'world_model'},
               'gradual': {'world_model', 'actor', 'critic'},
               'phased': {'world_model', 'critic'}}


@pytest.mark.parametrize('name', list(CASES))
def test_matrix_trains_and_acts(name, eager, tmp_path):
  spec, overrides = CASES[name]
  agent = _live(_agent(overrides, spec))
  config = load_config(None, list(SMALL_OVERRIDES) + overrides)
  learner = agent.learner
  rng = np.random.default_rng(7)
  slow_before = _snapshot(agent.slow_critic.variables)
  for env_step, want in ((5, EARLY_PARTS[config.warmup.type]),
                         (200, {'world_model', 'actor', 'critic'})):
    before = _snapshots(agent)
    metrics = agent.warmup.update(
        learner, lambda: _episodic_batch(spec, int(rng.integers(1000))),
        lambda: tf.constant(rng.integers(0, 1000, 2), tf.int32), env_step)
    losses = {k: float(v) for k, v in metrics.items() if k.endswith('loss')}
    assert losses and all(np.isfinite(list(losses.values()))), losses
    assert float(metrics['learner/nonfinite']) == 0.0
    assert _parts_moved(agent, before) == want, env_step
  assert _moved(slow_before, agent.slow_critic.variables)
  if learner.target.is_separate:  # the target follows the online model
    online = agent.world_model.trainable_variables
    target = learner.target.model.trainable_variables
    if config.world_model.target == 'copy':  # refreshed every update
      np.testing.assert_equal(_snapshot(target), _snapshot(online))
    else:
      assert not all(np.array_equal(a.numpy(), b.numpy())
                     for a, b in zip(online, target))

  obs = tf.constant(rng.normal(size=(3, spec.observation_dim)), tf.float32)
  action, _, stats = agent.policy.act(
      {'observation': obs},
          tf.ones([3], tf.bool), agent.policy.initial_state(3),
      tf.constant([1, 2]))
  action = action.numpy()
  assert action.shape == (3, spec.action_dim)
  if spec.discrete:
    np.testing.assert_allclose(action.sum(-1), 1.0, atol=1e-6)
  else:
    assert np.all(np.abs(action) <= 2.0)
  if config.acting.uncertainty:
    count = float(stats['acting/uncertain_steps'])
    assert 0 <= count <= 3
    threshold = float(agent.policy.uncertainty_threshold)
    if config.acting.uncertainty_reference == 'quantile':  # calibrated
      assert np.isfinite(threshold) and threshold > 0
      assert threshold == float(learner.uncertainty_calibration.threshold)
    else:
      assert threshold == 0.01
    latent = agent.world_model.encode({'observation': obs})
    unsure = agent.policy.uncertainty(
        latent, agent.actor(latent).sample(seed=tf.constant([1, 2])))
    assert count == float(np.sum(unsure.numpy() > threshold))
  else:
    assert stats == {}

  # Everything the learner and policy hold can be checkpointed and read
  # back (targets, optimizer layouts, compiled updates of part subsets).
  checkpoint = tf.train.Checkpoint(learner=learner, policy=agent.policy)
  path = checkpoint.save(str(tmp_path / 'ckpt'))
  checkpoint.restore(path).assert_consumed()


def test_matrix_jit_case_traces_once_and_guards(cartpole_spec):
  """XLA: dyna + gradual + masked + ema + symlog, then a NaN batch."""
  agent = _live(_agent([
      'run.jit=true', 'imagination.mode=dyna', 'warmup.type=gradual',
      'warmup.steps=100', 'optimizers.type=masked', 'world_model.target=ema',
      'imagination.symlog=true'], cartpole_spec))
  learner = agent.learner
  rng = np.random.default_rng(8)
  seed = lambda: tf.constant(rng.integers(0, 1000, 2), tf.int32)
  for env_step in (0, 50):
    before = _snapshots(agent)
    metrics = agent.warmup.update(
        learner, lambda: _episodic_batch(cartpole_spec, int(rng.integers(99))),
        seed, env_step)
    assert float(metrics['learner/nonfinite']) == 0.0
    assert np.isfinite(float(metrics['critic/loss']))
    assert _parts_moved(agent, before) == {'world_model', 'actor', 'critic'}
  assert float(metrics['critic/real_ratio']) == pytest.approx(
      0.5 + 0.5 * 0.5)  # real_ratio 0.5, the warmup's 0.5 at step 50
  bad = _episodic_batch(cartpole_spec, 3)
  bad['observation'] = bad['observation'] * np.nan
  before = _snapshots(agent)
  metrics = learner.train(bad, seed())
  assert float(metrics['learner/nonfinite']) == 1.0
  assert _parts_moved(agent, before) == set()
  assert learner.train.experimental_get_tracing_count() == 1
