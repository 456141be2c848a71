"""Tests for wm_tf/agent/actor_critic.py: its loss terms against NumPy, and
the learner trained on its own from start states given a world model."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import SMALL_OVERRIDES, make_batch
from wm_tf import losses, replicas
from wm_tf.agent import actor_critic as ac_lib
from wm_tf.agent.builder import build_agent
from wm_tf.config import ConfigError, load_config


def _inputs(seed=0, n=6, h=4):
  rng = np.random.default_rng(seed)
  return dict(
      targets=rng.normal(size=(n, h)), baseline=rng.normal(size=(n, h)),
      weights=rng.random((n, h)), log_probs=rng.normal(size=(n, h)) - 1.0,
      entropies=rng.random((n, h)), value_log_prob=rng.normal(size=(n, h)))


@pytest.mark.parametrize('gradient', ['dynamics', 'reinforce'])
def test_imagined_terms_match_numpy(gradient):
  x = _inputs()
  scale, entropy = 1.7, 0.03
  if gradient == 'dynamics':
    objective = x['targets'] / scale
  else:
    objective = x['log_probs'] * (x['targets'] - x['baseline']) / scale
  want_actor = -np.mean(x['weights'] * (objective + entropy * x['entropies']))
  want_critic = -np.mean(x['weights'] * x['value_log_prob'])
  terms = ac_lib.imagined_terms(
      **{k: tf.constant(v, tf.float32) for k, v in x.items()},
      scale=tf.constant(scale), gradient=gradient, entropy_scale=entropy)
  assert sorted(terms) == ['actor', 'critic']
  np.testing.assert_allclose(float(terms['actor']), want_actor, rtol=1e-5)
  np.testing.assert_allclose(float(terms['critic']), want_critic, rtol=1e-5)


def test_reinforce_term_does_not_differentiate_the_advantage():
  x = {k: tf.constant(v, tf.float32) for k, v in _inputs(1).items()}
  with tf.GradientTape(persistent=True) as tape:
    tape.watch(list(x.values()))
    terms = ac_lib.imagined_terms(**x, scale=tf.constant(1.0),
                                  gradient='reinforce', entropy_scale=0.0)
  assert tape.gradient(terms['actor'], x['targets']) is None
  assert tape.gradient(terms['actor'], x['baseline']) is None
  # d actor / d log_prob = -w A / N.
  want = -(x['weights'] * (x['targets'] - x['baseline'])).numpy() / 24
  np.testing.assert_allclose(
      tape.gradient(terms['actor'], x['log_probs']).numpy(), want, rtol=1e-5)


@pytest.mark.parametrize('real_ratio, warmup', [(0.0, 0.0), (0.0, 0.4),
                                                (0.5, 0.0), (0.3, 0.6),
                                                (1.0, 0.2)])
def test_mix_real_is_the_convex_real_ratio(real_ratio, warmup):
  terms = {'actor': tf.constant(2.0), 'critic': tf.constant(3.0),
           'actor_real': tf.constant(-1.0), 'critic_real': tf.constant(5.0)}
  actor, critic = ac_lib.mix_real(terms, real_ratio, tf.constant(warmup))
  w = real_ratio + (1 - real_ratio) * warmup
  np.testing.assert_allclose(float(actor), (1 - real_ratio) * 2.0 +
                             real_ratio * -1.0, rtol=1e-6)
  np.testing.assert_allclose(float(critic), (1 - w) * 3.0 + w * 5.0,
                             rtol=1e-6)
  # Without real terms the imagined ones are the losses.
  imagined = {k: terms[k] for k in ('actor', 'critic')}
  assert [float(v) for v in ac_lib.mix_real(imagined, real_ratio,
                                            tf.constant(warmup))] == [2.0, 3.0]


def test_loss_scales_weigh_each_term():
  terms = {'actor': tf.constant(2.0), 'critic': tf.constant(3.0),
           'actor_real': tf.constant(-1.0), 'critic_real': tf.constant(5.0)}
  scales = {'actor': 0.5, 'critic': 2.0, 'actor_real': 3.0,
            'critic_real': 0.25}
  rho, m = 0.3, 0.6
  actor, critic = ac_lib.mix_real(terms, rho, tf.constant(m), scales)
  w = rho + (1 - rho) * m
  np.testing.assert_allclose(float(actor),
                             0.5 * (1 - rho) * 2.0 + 3.0 * rho * -1.0,
                             rtol=1e-6)
  np.testing.assert_allclose(float(critic),
                             2.0 * (1 - w) * 3.0 + 0.25 * w * 5.0, rtol=1e-6)


@pytest.mark.parametrize('scales, message', [
    ({'actor': 1.0, 'critic': 1.0, 'critic_slow': 0.0, 'actor_real': 1.0},
     'actor_critic.loss_scales.critic_real is missing'),
    (dict(ac_lib.DEFAULT_LOSS_SCALES, entropy=1.0),
     'actor_critic.loss_scales.entropy is not a loss term'),
])
def test_loss_scales_must_match_the_terms(scales, message):
  with pytest.raises(losses.LossScaleError, match=message):
    ac_lib.ActorCritic(None, None, None, ac_lib.ActorCriticSettings(),
                       loss_scales=scales)


def test_start_states_flatten_the_batch():
  latent = tf.reshape(tf.range(2 * 3 * 4, dtype=tf.float32), [2, 3, 4])
  terminal = tf.constant([[False, True, False], [False, False, True]])
  start, alive = ac_lib.start_states({'is_terminal': terminal}, latent)
  np.testing.assert_array_equal(start.numpy(), latent.numpy().reshape(6, 4))
  np.testing.assert_array_equal(alive.numpy(), [1, 0, 1, 1, 1, 0])


def test_train_steps_only_the_chosen_parts(cartpole_spec):
  keras.utils.set_random_seed(0)
  agent = build_agent(load_config(None, SMALL_OVERRIDES), cartpole_spec)
  ac = agent.learner.actor_critic
  out = ac.critic.out
  out.kernel.assign(np.ones(out.kernel.shape, np.float32))
  batch = make_batch(cartpole_spec, np.random.default_rng(0))
  start, alive = ac_lib.start_states(
      batch, agent.world_model.latent_states(batch))
  metrics = ac.train(agent.world_model, start, alive, tf.constant([1, 2]),
                     actor=False, critic=True)
  assert 'critic/grad_norm' in metrics and 'actor/grad_norm' not in metrics
  assert int(ac.critic_optimizer.iterations.numpy()) == 1
  assert int(ac.actor_optimizer.iterations.numpy()) == 0
  assert int(agent.world_model.optimizer.iterations.numpy()) == 0


def test_config_loss_scales_reach_the_learner(cartpole_spec):
  keras.utils.set_random_seed(0)
  config = load_config(None, list(SMALL_OVERRIDES) + [
      'actor_critic.loss_scales.critic=0', 'actor_critic.loss_scales.actor=2'])
  ac = build_agent(config, cartpole_spec).learner.actor_critic
  assert ac.loss_scales == {'actor': 2.0, 'critic': 0.0, 'critic_slow': 0.0,
                            'actor_real': 1.0,
                            'critic_real': 1.0}
  batch = make_batch(cartpole_spec, np.random.default_rng(0))
  world_model = build_agent(config, cartpole_spec).world_model
  start, alive = ac_lib.start_states(batch, world_model.latent_states(batch))
  metrics = ac.train(world_model, start, alive, tf.constant([1, 2]))
  # A zero scale leaves the critic no gradient at all.
  assert float(metrics['critic/loss']) == 0.0
  assert float(metrics['critic/grad_norm']) == 0.0
  assert float(metrics['actor/grad_norm']) > 0.0


def test_slow_critic_term_is_the_likelihood_of_the_slow_mean(cartpole_spec):
  keras.utils.set_random_seed(0)
  config = load_config(None, list(SMALL_OVERRIDES) + [
      'actor_critic.loss_scales.critic_slow=1'])
  agent = build_agent(config, cartpole_spec)
  ac, world_model = agent.learner.actor_critic, agent.world_model
  # A slow copy that differs from the critic, so the term is not trivial.
  for v in ac.slow_critic.trainable_variables:
    v.assign(v + 0.3)
  batch = make_batch(cartpole_spec, np.random.default_rng(0))
  start, alive = ac_lib.start_states(batch, world_model.latent_states(batch))
  _, metrics = ac.loss(world_model, start, alive, tf.constant([1, 2]))
  # The same rollout, imagined again from the same seed: the term from
  # its states, with the Normal(mean, 1) critic's NLL written out.
  s = ac.settings
  traj = ac_lib.imagine(world_model.dynamics, ac.actor, start, s.horizon,
                        replicas.per_replica_seed(tf.constant([1, 2])),
                        s.sample_dynamics, unroll=s.unroll)
  states = traj['states'][:, :-1]
  continues = world_model.continue_probability(traj['states'][:, 1:])
  alive_t = tf.concat([alive[:, None], continues[:, :-1]], 1)
  weights = np.cumprod(alive_t.numpy(), axis=1)
  critic = ac.critic(states).mean().numpy()
  slow = ac.slow_critic(states).mean().numpy()
  nll = 0.5 * (slow - critic) ** 2 + 0.5 * np.log(2 * np.pi)
  np.testing.assert_allclose(float(metrics['critic/slow_loss']),
                             np.mean(weights * nll), rtol=1e-4)


def test_slow_critic_term_needs_a_moving_slow_critic():
  with pytest.raises(ConfigError, match='critic.slow_target_fraction=0'):
    load_config(None, ['actor_critic.loss_scales.critic_slow=1',
                       'critic.slow_target_fraction=0'])
  with pytest.raises(ConfigError, match='actor_critic.loss_scales.actor'):
    load_config(None, ['actor_critic.loss_scales.actor=-1'])
