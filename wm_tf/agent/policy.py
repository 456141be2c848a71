"""The acting policy: observations -> environment-ready agent actions.

Actions come from the actor (sampled, or its deterministic action) or, in
imagination.mode 'mpc', from a planner (`wm_tf.agent.mpc`). Optionally an
uncertainty check replaces actions where the world model is unsure:

    u(s, a) = mean over dimensions of dynamics(s, a).stddev()   [N]

(the learned std, or an ensemble's spread if the dynamics return one);
where u > threshold the action becomes the fallback's (registry
`FALLBACKS`, config `acting.fallback`).
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import tensorflow as tf
import tensorflow_probability as tfp

from wm_tf.registry import Registry
from wm_tf.world_model import WorldModel

FALLBACKS = Registry('acting.fallback')


@FALLBACKS.register('mean_action')
class MeanActionFallback:
  """The actor's deterministic action (mode or squashed mean)."""

  needs_planner = False

  def __init__(self, planner=None):
    del planner

  def __call__(self, latent, policy_dist, seed):
    del latent, seed
    return policy_dist.deterministic_action()


@FALLBACKS.register('mpc')
class PlannerFallback:
  """The planner's first action (`wm_tf.agent.mpc`)."""

  needs_planner = True

  def __init__(self, planner=None):
    if planner is None:
      raise ValueError("acting.fallback 'mpc' needs a planner.")
    self.planner = planner

  def __call__(self, latent, policy_dist, seed):
    del policy_dist
    return self.planner.plan(latent, seed)


class Policy(tf.Module):
  """Encodes observations and acts with the actor or a planner.

  `act(observation [N, O], seed int32 [2])` and
  `act_deterministic(observation [N, O])` return actions [N, A]: one-hot
  vectors for discrete actions, bounded vectors for continuous ones.
  `act_with_stats(observation, seed)` returns (actions [N, A],
  {name: scalar}); with an uncertainty check the stats hold
  'acting/uncertain_steps', the number of the N states whose action was
  replaced. Each is one compiled function; the batch size N may vary
  without retracing.

  Args:
    world_model, actor: the models.
    observation_dim: O.
    jit_compile: compile with XLA.
    planner: a `wm_tf.agent.mpc.Planner` to act with, or None for the actor.
    uncertainty_threshold: None (no check) or the threshold on u(s, a).
    fallback: the action source where u > threshold (`FALLBACKS` entry).
  """

  def __init__(self, world_model: WorldModel, actor, observation_dim: int,
               jit_compile: bool = True, name: str = 'policy', *,
               planner=None, uncertainty_threshold: Optional[float] = None,
               fallback=None):
    super().__init__(name=name)
    self.world_model = world_model
    self.actor = actor
    self.planner = planner
    self.uncertainty_threshold = uncertainty_threshold
    self.fallback = fallback
    if uncertainty_threshold is not None and fallback is None:
      self.fallback = MeanActionFallback()
    signature = [tf.TensorSpec([None, observation_dim], tf.float32)]
    seeded = signature + [tf.TensorSpec([2], tf.int32)]
    self.act = tf.function(
        lambda observation, seed: self._act(observation, seed, False)[0],
        jit_compile=jit_compile, input_signature=seeded,
        reduce_retracing=True)
    self.act_deterministic = tf.function(
        lambda observation: self._act(
            observation, tf.constant([0, 0], tf.int32), True)[0],
        jit_compile=jit_compile, input_signature=signature,
        reduce_retracing=True)
    self.act_with_stats = tf.function(
        lambda observation, seed: self._act(observation, seed, False),
        jit_compile=jit_compile, input_signature=seeded,
        reduce_retracing=True)

  def uncertainty(self, latent: tf.Tensor, action: tf.Tensor) -> tf.Tensor:
    """u(s, a) [N]: mean over dimensions of the next-state std."""
    return tf.reduce_mean(
        self.world_model.dynamics(latent, action).stddev(), -1)

  def _act(self, observation, seed, deterministic: bool
           ) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
    act_seed = seed
    fallback_seed = tfp.random.split_seed(seed, n=1, salt='fallback')[0]
    latent = self.world_model.encode(observation)
    dist = self.actor(latent)
    if self.planner is not None:
      action = self.planner.plan(latent, act_seed)
    elif deterministic:
      action = dist.deterministic_action()
    else:
      action = dist.sample(seed=act_seed)
    stats = {}
    if self.uncertainty_threshold is not None:
      unsure = self.uncertainty(latent, action) > self.uncertainty_threshold
      # Only compute the fallback (possibly a plan) when some state needs it.
      safe = tf.cond(tf.reduce_any(unsure),
                     lambda: self.fallback(latent, dist, fallback_seed),
                     lambda: tf.zeros_like(action))
      action = tf.where(unsure[:, None], safe, action)
      stats['acting/uncertain_steps'] = tf.reduce_sum(
          tf.cast(unsure, tf.float32))
    return action, stats
