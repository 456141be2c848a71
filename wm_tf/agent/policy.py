"""The acting policy: observations -> environment-ready agent actions.

Acting is a step function with a state (`Policy`): the world model's latent
after the previous observation and the action taken there, so a recurrent
representation (an RSSM) acts on the history of its episode.

Actions come from the actor (sampled, or its deterministic action) or, in
imagination.mode 'mpc', from a planner (`wm_tf.agent.mpc`); both act from
that latent. Optionally an uncertainty check replaces actions where the
world model is unsure:

    u(s, a) = mean over dimensions of dynamics(s, a).stddev()   [N]

(the learned std, or an ensemble's spread if the dynamics return one);
where u > threshold the action becomes the fallback's (registry
`FALLBACKS`, config `acting.fallback`). The threshold is a number, or the
variable of an `UncertaintyCalibration` that the learner keeps at a running
quantile of u over the replayed steps it trains on.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple, Union

import tensorflow as tf
import tensorflow_probability as tfp

from wm_tf import losses, quantiles, replicas
from wm_tf.registry import Registry
from wm_tf.world_model import WorldModel

FALLBACKS = Registry('acting.fallback')


def next_state_uncertainty(world_model: WorldModel, latent: tf.Tensor,
                           action: tf.Tensor) -> tf.Tensor:
  """u(s, a) [...]: mean over dimensions of the next-state std.

  Args:
    world_model: its `dynamics(latent, action)` gives p(s' | s, a).
    latent: s [..., D].
    action: a [..., A].
  """
  return tf.reduce_mean(world_model.dynamics(latent, action).stddev(), -1)


class UncertaintyCalibration(tf.Module):
  """A running quantile of u(s, a) over replayed steps: the acting threshold.

  Each `update(u, valid)` takes u of the (s_t, a_t) of one train batch and
  its q-quantile over the valid entries (lower nearest rank, by bisection:
  `wm_tf.quantiles`), and moves `threshold` towards it:

      threshold <- quantile                                  (first update)
      threshold <- decay * threshold + (1 - decay) * quantile   (later)

  Before the first update the threshold is +inf: nothing counts as unsure.

  Args:
    quantile: q in (0, 1).
    decay: weight of the running value, in [0, 1).
  Both ranges are rules of the config (acting.uncertainty_quantile,
  acting.uncertainty_decay), checked there once.
  """

  def __init__(self, quantile: float, decay: float = 0.99,
               name: str = 'uncertainty_calibration'):
    super().__init__(name=name)
    self.quantile = float(quantile)
    self.decay = float(decay)
    first = tf.VariableAggregation.ONLY_FIRST_REPLICA
    self.threshold = tf.Variable(float('inf'), trainable=False,
                                 name='threshold', aggregation=first)

  def batch_quantile(self, uncertainty: tf.Tensor,
                     valid: tf.Tensor) -> tf.Tensor:
    """The q-quantile of u [...] over entries where valid [...] (bool).

    Invalid entries are set to -inf, below every valid one, and the rank
    is counted from the first valid entry. With no valid entry: -inf.
    """
    flat = tf.reshape(tf.cast(uncertainty, tf.float32), [-1])
    valid = tf.reshape(valid, [-1])
    flat = tf.where(valid, flat, float('-inf'))
    count = tf.reduce_sum(tf.cast(valid, tf.int32))
    skipped = tf.size(flat) - count
    rank = skipped + tf.cast(
        self.quantile * tf.cast(tf.maximum(count - 1, 0), tf.float32),
        tf.int32)
    rank = tf.minimum(rank, tf.size(flat) - 1)  # no valid entry: the last
    return quantiles.order_statistics(flat, rank[None])[0]

  def update(self, uncertainty: tf.Tensor, valid: tf.Tensor) -> tf.Tensor:
    """Moves the threshold towards this batch's quantile; returns it.

    Under a strategy every replica passes its part of the batch; the
    quantile is that of the global batch (the same in every replica). A
    batch without valid or finite entries leaves the threshold as it is.
    """
    uncertainty = replicas.gather(tf.reshape(uncertainty, [-1]))
    valid = replicas.gather(tf.cast(tf.reshape(valid, [-1]), tf.float32)) > 0
    value = self.batch_quantile(uncertainty, valid)
    old = self.threshold
    new = tf.where(tf.math.is_inf(old), value,
                   self.decay * old + (1.0 - self.decay) * value)
    keep = tf.math.is_finite(value)
    self.threshold.assign(tf.where(keep, new, old))
    return self.threshold.read_value()

  def observe(self, world_model: WorldModel, batch: Dict[str, tf.Tensor],
              latent: tf.Tensor) -> Dict[str, tf.Tensor]:
    """`update` with u(s_t, a_t) of a batch's real transitions.

    latent [B, T, D]; a_t = batch['action'][:, t] was taken in s_t where
    the transition t -> t+1 is real (not is_first_{t+1}). Returns the
    metrics: the new threshold, and the fraction of those transitions
    whose u exceeds it (near 1 - quantile while the model's std is
    steady; lower while it falls, as the running threshold lags).
    """
    states = tf.stop_gradient(latent[:, :-1])
    actions = tf.cast(batch['action'], tf.float32)[:, :-1]
    valid = tf.logical_not(tf.cast(batch['is_first'], tf.bool)[:, 1:])
    uncertainty = next_state_uncertainty(world_model, states, actions)
    threshold = self.update(uncertainty, valid)
    above = tf.cast(tf.logical_and(valid, uncertainty > threshold),
                    tf.float32)
    return {'learner/uncertainty_threshold': threshold,
            'learner/uncertain_fraction': losses.masked_mean(
                above, tf.cast(valid, tf.float32))}


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
  """Acts step by step, carrying the world model's latent state.

  The acting state is a dict of float32 tensors:
    'latent' [N, D]: the latent state after the previous observation;
    'action' [N, A]: the action taken there (a_{t-1}).
  One step observes o_t with `world_model.observe_step` (a recurrent
  representation carries its history; where is_first_t is set it starts
  afresh; stateless ones ignore the state) and acts from the new latent:

    s_t = observe_step(state['latent'], state['action'], o_t, is_first_t)
    a_t = actor(s_t) sample / deterministic action, or planner(s_t)
    new state = {'latent': s_t, 'action': a_t}

  `initial_state(N)` is the state before any observation; a step from it
  equals an is_first step, so resetting a row to it also starts an episode.

  Compiled functions (one trace each: the batch size N may vary):
    act(observation {key: [N, *shape]}, is_first bool [N], state,
        seed int32 [2])
      -> (action [N, A], new state, stats {name: scalar});
    act_deterministic(observation, is_first, state) -> the same, with the
      actor's deterministic action (a planner plans with seed [0, 0]).
  Actions are one-hot vectors for discrete actions, bounded vectors for
  continuous ones. With an uncertainty check the stats hold
  'acting/uncertain_steps', the number of the N states whose action was
  replaced (else they are empty).

  Args:
    world_model, actor: the models.
    observations: the observation keys (`wm_tf.specs.ObservationSpec`s):
      the compiled steps take exactly these keys, float32 vectors and
      uint8 images, as the environment returns them.
    jit_compile: compile with XLA.
    planner: a `wm_tf.agent.mpc.Planner` to act with, or None for the actor.
    uncertainty_threshold: None (no check), or the threshold on u(s, a):
      a number, or a scalar variable read at every step (an
      `UncertaintyCalibration`'s `threshold`).
    fallback: the action source where u > threshold (`FALLBACKS` entry).
  """

  def __init__(self, world_model: WorldModel, actor, observations,
               jit_compile: bool = True, name: str = 'policy', *,
               planner=None,
               uncertainty_threshold: Optional[Union[float, tf.Variable]] = (
                   None),
               fallback=None):
    super().__init__(name=name)
    self.world_model = world_model
    self.actor = actor
    self.planner = planner
    self.uncertainty_threshold = uncertainty_threshold
    self.fallback = fallback
    if uncertainty_threshold is not None and fallback is None:
      self.fallback = MeanActionFallback()
    self.action_dim = int(actor.action_dim)
    observation = {o.key: tf.TensorSpec((None,) + o.shape, o.dtype)
                   for o in observations}
    step = [observation, tf.TensorSpec([None], tf.bool), {
        'latent': tf.TensorSpec([None, world_model.latent_dim], tf.float32),
        'action': tf.TensorSpec([None, self.action_dim], tf.float32)}]
    seed = tf.TensorSpec([2], tf.int32)
    # AutoGraph off, as for the learner's steps (`Learner._compile`).
    compile_ = lambda fn, signature: tf.function(
        fn, jit_compile=jit_compile, input_signature=signature,
        reduce_retracing=True, autograph=False)
    self.act = compile_(
        lambda observation, is_first, state, seed: self.step(
            observation, is_first, state, seed, False), step + [seed])
    self.act_deterministic = compile_(
        lambda observation, is_first, state: self.step(
            observation, is_first, state, tf.zeros([2], tf.int32), True),
        step)

  @property
  def recurrent(self) -> bool:
    """Whether the state carries history (else acting ignores it)."""
    return self.world_model.recurrent

  def initial_state(self, batch_size) -> Dict[str, tf.Tensor]:
    """The state before the first observation: latent [N, D], action [N, A]."""
    return {'latent': self.world_model.initial_state(batch_size),
            'action': tf.zeros([batch_size, self.action_dim], tf.float32)}

  def uncertainty(self, latent: tf.Tensor, action: tf.Tensor) -> tf.Tensor:
    """u(s, a) [N] (`next_state_uncertainty`)."""
    return next_state_uncertainty(self.world_model, latent, action)

  def step(self, observation, is_first, state: Dict[str, tf.Tensor], seed,
           deterministic) -> Tuple[tf.Tensor, Dict[str, tf.Tensor],
                                   Dict[str, tf.Tensor]]:
    """One acting step, uncompiled: what `act` and `act_deterministic` run.

    Args:
      observation: o_t, {key: [N, *shape]}.
      is_first: [N], true where o_t starts an episode.
      state: the state after o_{t-1} (or `initial_state(N)`).
      seed: int32 [2], the stateless seed of sampling and planning.
      deterministic: a Python bool or a bool scalar tensor: the actor's
        deterministic action (a planner then plans with seed [0, 0]).

    Returns:
      (action a_t [N, A], the state after o_t, stats {name: scalar}).
    """
    seed = tf.where(deterministic, tf.zeros_like(seed), seed)
    fallback_seed = tfp.random.split_seed(seed, n=1, salt='fallback')[0]
    latent = self.world_model.observe_step(
        state['latent'], state['action'], observation, is_first)
    dist = self.actor(latent)
    if self.planner is not None:
      action = self.planner.plan(latent, seed)
    elif isinstance(deterministic, bool):
      action = (dist.deterministic_action() if deterministic
                else dist.sample(seed=seed))
    else:
      action = tf.cond(deterministic, dist.deterministic_action,
                       lambda: dist.sample(seed=seed))
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
    return action, {'latent': latent, 'action': action}, stats
