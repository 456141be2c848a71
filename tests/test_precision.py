"""run.precision: bfloat16 layers, float32 weights, distributions and losses."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import SMALL_OVERRIDES
from wm_tf.agent.builder import build_agent, build_world_model
from wm_tf.config import ConfigError, load_config
from wm_tf.runtime.environments import EnvSpec

BF16 = ['run.precision=bfloat16']


def test_precision_is_validated():
  assert load_config(None, []).run.precision == 'float32'
  assert load_config(None, BF16).run.precision == 'bfloat16'
  with pytest.raises(ConfigError) as error:
    load_config(None, ['run.precision=float16'])
  message = str(error.value)
  assert "'run.precision'" in message
  assert "'float32'" in message and "'bfloat16'" in message


def _parts(agent):
  return (agent.world_model, agent.actor, agent.critic, agent.slow_critic)


@pytest.fixture(scope='module')
def agents():
  """(float32 agent, bfloat16 agent with the float32 agent's weights)."""
  spec = EnvSpec('CartPole-v1', observations=4, action_dim=2,
                 discrete=True)
  keras.utils.set_random_seed(0)
  single = build_agent(load_config(None, SMALL_OVERRIDES), spec)
  half = build_agent(load_config(None, list(SMALL_OVERRIDES) + BF16), spec)
  for source, target in zip(_parts(single), _parts(half)):
    assert len(source.variables) == len(target.variables)
    for s, t in zip(source.variables, target.variables):
      t.assign(s)
  return single, half


def test_bfloat16_layers_keep_float32_weights(agents):
  _, half = agents
  # Per-layer policies: building a bfloat16 agent leaves the global one.
  assert keras.config.dtype_policy().name == 'float32'
  layers = [half.world_model.encoder.mlp.mlp.dense_0, half.actor.out,
            half.critic.mlp.norm_0, half.world_model.dynamics.mean,
            half.world_model.representation.out]
  for layer in layers:
    assert layer.compute_dtype == 'bfloat16', layer.path
  for part in _parts(half):
    for variable in part.variables:
      assert variable.dtype == 'float32', variable.path


def test_bfloat16_distributions_are_float32(agents, batch_factory):
  _, half = agents
  batch = batch_factory(0)
  wm = half.world_model
  latent = wm.encode(batch)  # [B, T, D]
  action = tf.cast(batch['action'], tf.float32)
  seed = tf.constant([1, 2], tf.int32)
  assert latent.dtype == tf.float32
  features = wm.encoder(batch)
  assert features.dtype == tf.float32
  outputs = {
      'dynamics mean': wm.dynamics(latent, action).mean(),
      'dynamics stddev': wm.dynamics(latent, action).stddev(),
      'dynamics sample': wm.dynamics(latent, action).sample(seed=seed),
      'reward': wm.reward(latent).mean(),
      'continue': wm.continue_(latent).probs_parameter(),
      'decoder': wm.decoder(latent)['observation'].mean(),
      'representation': wm.representation(features).mode(),
      'actor sample': half.actor(latent).sample(seed=seed),
      'actor log_prob': half.actor(latent).log_prob(action),
      'critic': half.critic(latent).mean(),
      'act': half.policy.act({'observation': batch['observation'][:, 0]},
                             batch['is_first'][:, 0],
                             half.policy.initial_state(len(batch['action'])),
                             seed)[0],
  }
  for name, value in outputs.items():
    assert value.dtype == tf.float32, name
  loss, train_latent, metrics = wm.world_model_loss(batch, seed)
  assert loss.dtype == tf.float32 and train_latent.dtype == tf.float32
  assert all(v.dtype == tf.float32 for v in metrics.values())


def test_bfloat16_loss_near_float32_with_the_same_weights(agents,
                                                          batch_factory):
  single, half = agents
  batch = batch_factory(1)
  seed = tf.constant([4, 5], tf.int32)
  full = single.world_model.world_model_loss(batch, seed)[0].numpy()
  reduced = half.world_model.world_model_loss(batch, seed)[0].numpy()
  assert reduced != full  # bfloat16 did compute
  # bfloat16 keeps 8 bits of mantissa (relative error ~ 4e-3 per value).
  np.testing.assert_allclose(reduced, full, rtol=2e-2)
  value = single.critic(single.world_model.encode(batch))
  value_half = half.critic(half.world_model.encode(batch))
  np.testing.assert_allclose(value_half.mean(), value.mean(), atol=5e-2)


def test_bfloat16_train_step_gives_finite_float32_losses(agents,
                                                         batch_factory):
  _, half = agents
  before = [v.numpy() for v in half.world_model.trainable_variables]
  for step in range(2):
    metrics = half.learner.train(batch_factory(10 + step),
                                 tf.constant([7, step], tf.int32))
    for name, value in metrics.items():
      assert value.dtype == tf.float32, name
      assert np.isfinite(value.numpy()), name
    assert float(metrics['learner/nonfinite']) == 0.0
  after = half.world_model.trainable_variables
  assert any(not np.array_equal(b, a.numpy()) for b, a in zip(before, after))
  for variable in after:
    assert variable.dtype == 'float32'


@pytest.mark.parametrize('overrides', [
    ['representation_learner.type=none',
     'representation_learner.latent_dim=32'],
    ['representation_learner.type=mlp_autoencoder'],
    ['representation_learner.type=vae'],
    ['representation_learner.type=contrastive'],
    ['representation_learner.type=vq'],
    ['representation_learner.type=rssm'],
    ['dynamics.type=deterministic'],
    ['dynamics.type=ensemble', 'dynamics.members=2'],
    ['dynamics.type=mixture'],
    ['imagination.symlog=true'],
], ids=lambda o: o[0].split('.')[-1])
def test_every_family_trains_in_bfloat16(overrides, cartpole_spec,
                                         batch_factory):
  """World-model loss and gradients: float32 and finite for each family."""
  config = load_config(None, list(SMALL_OVERRIDES) + overrides + BF16)
  wm = build_world_model(config, cartpole_spec)
  batch = batch_factory(2)
  with tf.GradientTape() as tape:
    loss, latent, metrics = wm.world_model_loss(
        batch, tf.constant([3, 4], tf.int32))
  grads = tape.gradient(loss, wm.trainable_variables)
  assert loss.dtype == tf.float32 and np.isfinite(loss.numpy())
  assert latent.dtype == tf.float32
  assert all(np.isfinite(v.numpy()) for v in metrics.values())
  # (The VQ codebook's gradient is an IndexedSlices.)
  reached = [tf.convert_to_tensor(g) for g in grads if g is not None]
  assert reached
  for g in reached:
    assert g.dtype == tf.float32 and np.all(np.isfinite(g.numpy()))
  next_state = wm.dynamics(latent[:, 0], tf.cast(batch['action'][:, 0],
                                                 tf.float32))
  assert next_state.mean().dtype == tf.float32
