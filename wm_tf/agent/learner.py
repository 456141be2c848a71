"""The update step: which loss trains which variables, with which optimizer.

Three optimizers, three disjoint variable sets:
  world model <- world-model NLL;
  actor       <- imagined returns (through the dynamics) or REINFORCE;
  critic      <- value regression on the imagined return targets.
Each gradient is taken with respect to its own variables only, so actor and
critic losses never change the world model even though they are computed
through it.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Optional

import keras
import tensorflow as tf

from wm_tf import returns as returns_lib
from wm_tf.agent.imagination import imagine
from wm_tf.world_model import WorldModel


@dataclasses.dataclass
class ActorCriticSettings:
  """Plain settings of the imagination update (from the config)."""
  horizon: int = 15
  gamma: float = 0.99
  returns_type: str = 'lambda'
  lambda_: float = 0.95
  n_step: int = 5
  actor_gradient: str = 'dynamics'  # 'dynamics' | 'reinforce'
  entropy: float = 3e-4
  return_normalization: bool = True
  slow_critic_fraction: float = 0.02
  sample_dynamics: bool = True


@dataclasses.dataclass
class OptimizerSettings:
  learning_rate: float
  clip_norm: float = 100.0
  epsilon: float = 1e-8


def make_optimizer(settings: OptimizerSettings, name: str):
  return keras.optimizers.Adam(
      learning_rate=settings.learning_rate, epsilon=settings.epsilon,
      name=name)


def clip_and_apply(optimizer, loss_tape, loss, variables, clip_norm,
                   metrics: Dict[str, tf.Tensor], prefix: str) -> None:
  """Gradients of `loss` for `variables` only, clipped by global norm."""
  grads = loss_tape.gradient(loss, variables)
  grads = [tf.zeros_like(v) if g is None else g
           for g, v in zip(grads, variables)]
  grads, norm = tf.clip_by_global_norm(grads, clip_norm)
  optimizer.apply_gradients(zip(grads, variables))
  metrics[f'{prefix}/grad_norm'] = norm


class Learner(tf.Module):
  """Owns the models' optimizers and runs the compiled train steps.

  `train_world_model(batch)` updates the world model only (warmup);
  `train(batch, seed)` updates world model, actor and critic in one
  compiled program. Both return {metric name: scalar}.
  """

  def __init__(self, world_model: WorldModel, actor, critic, slow_critic,
               settings: ActorCriticSettings,
               world_model_optimizer: OptimizerSettings,
               actor_optimizer: OptimizerSettings,
               critic_optimizer: OptimizerSettings,
               jit_compile: bool = True, name: str = 'learner'):
    super().__init__(name=name)
    self.world_model = world_model
    self.actor = actor
    self.critic = critic
    self.slow_critic = slow_critic
    self.settings = settings
    self._opt_settings = {'world_model': world_model_optimizer,
                          'actor': actor_optimizer, 'critic': critic_optimizer}
    self.world_model_optimizer = make_optimizer(world_model_optimizer,
                                                'world_model_adam')
    self.actor_optimizer = make_optimizer(actor_optimizer, 'actor_adam')
    self.critic_optimizer = make_optimizer(critic_optimizer, 'critic_adam')
    # Running percentile range of the imagined returns (for normalisation).
    self.return_scale = tf.Variable(1.0, trainable=False, name='return_scale')
    self.train_steps = tf.Variable(0, dtype=tf.int64, trainable=False,
                                   name='train_steps')
    self.train_world_model = tf.function(self._train_world_model,
                                         jit_compile=jit_compile)
    self.train = tf.function(self._train, jit_compile=jit_compile)

  def build(self, batch: Dict[str, tf.Tensor]) -> None:
    """Creates every variable (models, optimizer slots) before compiling."""
    latent = self.world_model.world_model_loss(batch)[1]
    flat = tf.reshape(latent, [-1, latent.shape[-1]])
    action = self.actor(flat).sample(seed=tf.constant([0, 0], tf.int32))
    self.world_model.dynamics(flat, action)
    self.critic(flat)
    self.slow_critic(flat)
    for src, dst in zip(self.critic.variables, self.slow_critic.variables):
      dst.assign(src)
    self.world_model_optimizer.build(self.world_model.trainable_variables)
    self.actor_optimizer.build(self.actor.trainable_variables)
    self.critic_optimizer.build(self.critic.trainable_variables)

  # -- world model ----------------------------------------------------------

  def _world_model_update(self, batch, metrics):
    variables = self.world_model.trainable_variables
    with tf.GradientTape() as tape:
      loss, latent, wm_metrics = self.world_model.world_model_loss(batch)
    clip_and_apply(self.world_model_optimizer, tape, loss, variables,
                   self._opt_settings['world_model'].clip_norm, metrics,
                   'world_model')
    metrics.update(wm_metrics)
    return latent

  def _train_world_model(self, batch):
    metrics = {}
    self._world_model_update(batch, metrics)
    self.train_steps.assign_add(1)
    return metrics

  # -- actor and critic -----------------------------------------------------

  def _train(self, batch, seed):
    metrics = {}
    latent = self._world_model_update(batch, metrics)
    start = tf.stop_gradient(tf.reshape(latent, [-1, latent.shape[-1]]))
    start_alive = 1.0 - tf.reshape(
        tf.cast(batch['is_terminal'], tf.float32), [-1])
    self._actor_critic_update(start, start_alive, seed, metrics)
    self.train_steps.assign_add(1)
    return metrics

  def _actor_critic_update(self, start, start_alive, seed, metrics):
    """Imagines from `start` [N, D] and updates actor and critic.

    `start_alive` [N] is 0 for terminal start states, whose rollouts are
    masked out of both losses.
    """
    s = self.settings
    wm = self.world_model
    with tf.GradientTape(persistent=True) as tape:
      traj = imagine(wm.dynamics, self.actor, start, s.horizon, seed,
                     s.sample_dynamics)
      states = traj['states']  # [N, H+1, D]
      rewards = wm.reward(states[:, 1:]).mean()  # [N, H]
      continues = wm.continue_(states[:, 1:]).mean()  # [N, H]
      discounts = s.gamma * continues
      value_net = (self.slow_critic if s.slow_critic_fraction > 0
                   else self.critic)
      values = value_net(states).mean()  # [N, H+1]
      targets = returns_lib.value_targets(
          s.returns_type, rewards, values, discounts, lambda_=s.lambda_,
          n=s.n_step)  # [N, H]
      # weight_t: probability that imagined state t is still in the episode.
      alive = tf.concat([start_alive[:, None], continues[:, :-1]], 1)
      weights = tf.stop_gradient(tf.math.cumprod(alive, axis=1))  # [N, H]

      scale = self._update_return_scale(targets)
      baseline = values[:, :-1]
      if s.actor_gradient == 'dynamics':
        objective = targets / scale
      else:
        advantage = tf.stop_gradient((targets - baseline) / scale)
        objective = traj['log_probs'] * advantage
      entropy = traj['entropies']
      actor_loss = -tf.reduce_mean(weights * (objective + s.entropy * entropy))

      value_dist = self.critic(tf.stop_gradient(states[:, :-1]))
      critic_loss = -tf.reduce_mean(
          weights * value_dist.log_prob(tf.stop_gradient(targets)))

    clip_and_apply(self.actor_optimizer, tape, actor_loss,
                   self.actor.trainable_variables,
                   self._opt_settings['actor'].clip_norm, metrics, 'actor')
    clip_and_apply(self.critic_optimizer, tape, critic_loss,
                   self.critic.trainable_variables,
                   self._opt_settings['critic'].clip_norm, metrics, 'critic')
    del tape
    self._update_slow_critic()

    metrics.update({
        'actor/loss': actor_loss,
        'actor/entropy': tf.reduce_mean(entropy),
        'actor/return_scale': scale,
        'critic/loss': critic_loss,
        'critic/value_mean': tf.reduce_mean(value_dist.mean()),
        'imagination/return_mean': tf.reduce_mean(targets),
        'imagination/reward_mean': tf.reduce_mean(rewards),
        'imagination/continue_mean': tf.reduce_mean(continues),
        'imagination/weight_mean': tf.reduce_mean(weights),
    })

  def _update_return_scale(self, targets):
    if not self.settings.return_normalization:
      return tf.constant(1.0)
    flat = tf.reshape(targets, [-1])
    n = tf.shape(flat)[0]
    ordered = tf.sort(tf.stop_gradient(flat))
    low = ordered[tf.cast(0.05 * tf.cast(n - 1, tf.float32), tf.int32)]
    high = ordered[tf.cast(0.95 * tf.cast(n - 1, tf.float32), tf.int32)]
    self.return_scale.assign(0.99 * self.return_scale + 0.01 * (high - low))
    return tf.maximum(1.0, self.return_scale)

  def _update_slow_critic(self):
    mix = self.settings.slow_critic_fraction
    if mix <= 0:
      return
    for src, dst in zip(self.critic.variables, self.slow_critic.variables):
      dst.assign((1.0 - mix) * dst + mix * src)
