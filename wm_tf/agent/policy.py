"""The acting policy: observations -> environment-ready agent actions."""

from __future__ import annotations

import tensorflow as tf

from wm_tf.world_model import WorldModel


class Policy(tf.Module):
  """Encodes observations and samples (or takes the mode of) the actor.

  `act(observation [N, O], seed int32 [2])` and
  `act_deterministic(observation [N, O])` return actions [N, A]: one-hot
  vectors for discrete actions, bounded vectors for continuous ones. Each is
  one compiled function; the batch size N may vary without retracing.
  """

  def __init__(self, world_model: WorldModel, actor, observation_dim: int,
               jit_compile: bool = True, name: str = 'policy'):
    super().__init__(name=name)
    self.world_model = world_model
    self.actor = actor
    signature = [tf.TensorSpec([None, observation_dim], tf.float32)]
    self.act = tf.function(
        self._act, jit_compile=jit_compile,
        input_signature=signature + [tf.TensorSpec([2], tf.int32)],
        reduce_retracing=True)
    self.act_deterministic = tf.function(
        self._act_deterministic, jit_compile=jit_compile,
        input_signature=signature, reduce_retracing=True)

  def _act(self, observation, seed):
    latent = self.world_model.encode(observation)
    return self.actor(latent).sample(seed=seed)

  def _act_deterministic(self, observation):
    latent = self.world_model.encode(observation)
    return self.actor(latent).deterministic_action()
