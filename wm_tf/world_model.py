"""The world model: encoder -> representation -> latent, dynamics and heads.

Batches are time-major within each sequence: every tensor is [B, T, ...],
T the time axis, holding the replay's step records (see
`wm_tf.runtime.replay`): step t has observation o_t, the action a_t taken
at o_t, the reward r_t received on arriving at o_t, and flags is_first /
is_terminal.

    o_0 --a_0--> o_1 --a_1--> o_2 ...
         r_1, c_1     r_2, c_2          (c_t = 1 - is_terminal_t)

The transition t -> t+1 is real unless step t+1 starts a new episode.
"""

from __future__ import annotations

from typing import Dict, Tuple

import keras
import tensorflow as tf


def masked_mean(values: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
  """Mean of `values` over entries where mask = 1 (0 if there are none)."""
  return tf.reduce_sum(values * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)


class WorldModel(keras.Model):
  """Holds the world-model components and computes their NLL loss.

  Args:
    encoder: observations [..., O] -> features [..., F].
    representation: features -> distribution over latents [..., D].
    dynamics: (latent [..., D], action [..., A]) -> distribution [..., D].
    reward, continue_, decoder: heads on latents [..., D].
    loss_scales: weights of the terms 'dynamics', 'reward', 'continue',
      'decoder'.
    stop_gradient_target: stop the gradient of the dynamics target.
  """

  def __init__(self, encoder, representation, dynamics, reward, continue_,
               decoder, loss_scales: Dict[str, float],
               stop_gradient_target: bool = True, **kwargs):
    super().__init__(**kwargs)
    self.encoder = encoder
    self.representation = representation
    self.dynamics = dynamics
    self.reward = reward
    self.continue_ = continue_
    self.decoder = decoder
    self.loss_scales = dict(loss_scales)
    self.stop_gradient_target = stop_gradient_target

  @property
  def latent_dim(self) -> int:
    return self.representation.latent_dim

  def encode(self, observation: tf.Tensor) -> tf.Tensor:
    """Latent states [..., D] (the mode) of observations [..., O]."""
    return self.representation(self.encoder(observation)).mode()

  def call(self, observation):
    return self.encode(observation)

  def world_model_loss(self, batch: Dict[str, tf.Tensor]
           ) -> Tuple[tf.Tensor, tf.Tensor, Dict[str, tf.Tensor]]:
    """Negative log-likelihood of a batch of sequences.

    Args:
      batch: 'observation' [B, T, O], 'action' [B, T, A], 'reward' [B, T],
        'is_first' [B, T], 'is_terminal' [B, T] (floats or bools).

    Returns:
      (total loss scalar, latent states [B, T, D], metrics {name: scalar}).
    """
    obs = batch['observation']
    action = batch['action']
    reward = batch['reward']
    is_first = tf.cast(batch['is_first'], tf.float32)
    cont = 1.0 - tf.cast(batch['is_terminal'], tf.float32)

    features = self.encoder(obs)
    latent_dist = self.representation(features)
    latent = latent_dist.mode()

    target = latent[:, 1:]
    if self.stop_gradient_target:
      target = tf.stop_gradient(target)
    prediction = self.dynamics(latent[:, :-1], action[:, :-1])
    real_transition = 1.0 - is_first[:, 1:]
    dynamics_nll = masked_mean(-prediction.log_prob(target), real_transition)
    dynamics_mse = masked_mean(
        tf.reduce_mean(tf.square(prediction.mean() - target), -1),
        real_transition)

    not_first = 1.0 - is_first
    reward_nll = masked_mean(-self.reward(latent).log_prob(reward), not_first)
    continue_nll = tf.reduce_mean(-self.continue_(latent).log_prob(cont))
    decoder_nll = tf.reduce_mean(-self.decoder(latent).log_prob(obs))
    aux_loss, aux_metrics = self.representation.auxiliary_loss(
        features, latent_dist)

    scales = self.loss_scales
    total = (scales['dynamics'] * dynamics_nll + scales['reward'] * reward_nll
             + scales['continue'] * continue_nll
             + scales['decoder'] * decoder_nll + aux_loss)
    metrics = {
        'world_model/loss': total,
        'world_model/dynamics_nll': dynamics_nll,
        'world_model/dynamics_mse': dynamics_mse,
        'world_model/dynamics_std': masked_mean(
            tf.reduce_mean(prediction.stddev(), -1), real_transition),
        'world_model/reward_nll': reward_nll,
        'world_model/continue_nll': continue_nll,
        'world_model/decoder_nll': decoder_nll,
        'world_model/latent_abs_mean': tf.reduce_mean(tf.abs(latent)),
    }
    metrics.update({f'world_model/{k}': v for k, v in aux_metrics.items()})
    return total, latent, metrics
