"""The agent's update: the world-model learner and the actor-critic learner.

Two learners, composed:
  world model  <- its NLL (`WorldModel.train`, through the target wrapper
                  `wm_tf.agent.targets`, which follows each update);
  actor, critic <- imagined (and real) terms from the batch's latent
                  states, imagined in the target's model
                  (`wm_tf.agent.actor_critic.ActorCritic.train`).
`Updates` names which of world model, actor and critic a call updates (the
warmup schedules choose, `wm_tf.agent.warmup`). The optimizer layout
(`wm_tf.agent.optimizers`) decides which gradients reach which variables:
'separate' hands each learner its own optimizers and the learners step in
turn; 'single' and 'masked' compute every loss on the models before the
update and apply them in one step (`layout.apply`). Either way actor and
critic losses never change the world model unless the layout says so.
After a world-model update the acting policy's uncertainty calibration, if
any, is fed with the batch (`UncertaintyCalibration.observe`).

Non-finite guard: an update whose loss or gradient norm is not finite is
not applied (`tf.cond`, XLA-compatible); the metric 'learner/nonfinite' is
1.0 for a call in which any update was skipped, else 0.0.

Distribution: given a tf.distribute strategy (whose scope created every
variable), each compiled update runs `strategy.run` on a batch distributed
over the replicas ([B / R, T, ...] each, see
`wm_tf.runtime.distribution.distribute_batch`) and averages the replicas'
metrics. Inside, the update computes what one device computes on the
global batch (`wm_tf.replicas`): masked means over the global mask count,
gradients averaged over replicas before clipping, return percentiles over
every replica's imagined returns, and identical updates of the slow critic,
target model and counters in every replica. Only the random draws differ:
each replica samples with its own seed.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Callable, Dict, Optional

import keras
import tensorflow as tf

from wm_tf import distributions
from wm_tf.agent import policy as policy_lib
from wm_tf.agent.actor_critic import (ActorCritic, ActorCriticSettings,
                                      start_states)
from wm_tf.agent.optimizers import OptimizerLayout, OptimizerSettings
from wm_tf.agent.targets import NoTarget, WorldModelTarget
from wm_tf.world_model import WorldModel

__all__ = ['ActorCriticSettings', 'Learner', 'OptimizerSettings', 'Updates']


@dataclasses.dataclass(frozen=True)
class Updates:
  """Which parts one learner call updates."""
  world_model: bool = True
  actor: bool = True
  critic: bool = True

  @property
  def name(self) -> str:
    """'world_model+actor+critic', 'critic', ... or 'nothing'."""
    parts = [p for p, on in (('world_model', self.world_model),
                             ('actor', self.actor),
                             ('critic', self.critic)) if on]
    return '+'.join(parts) or 'nothing'

  @property
  def actor_critic(self) -> bool:
    return self.actor or self.critic


ALL = Updates()
WORLD_MODEL_ONLY = Updates(world_model=True, actor=False, critic=False)


def _with_xla_sampling(function: Callable) -> Callable:
  """`function`, tracing under `distributions.xla_sampling()`: for bodies
  of tf.functions that XLA always compiles."""

  def traced(*args):
    with distributions.xla_sampling():
      return function(*args)

  return traced


class Learner(tf.Module):
  """Composes the two learners into compiled train steps.

  `train_world_model(batch)` updates the world model only (warmup);
  `train(batch, seed)` updates world model, actor and critic in one
  compiled program; `update_function(updates)` gives the compiled update
  of any `Updates`, called as `fn(batch, seed)`. Each returns
  {metric name: scalar}.

  Args:
    world_model: the online `WorldModel`.
    actor_critic: the `ActorCritic` learner.
    layout: the `OptimizerLayout` holding every optimizer; with a
      non-joint layout the learners must have been given theirs
      (`use_optimizer`, `use_optimizers`).
    jit_compile: compile the updates with XLA.
    target: a `WorldModelTarget` wrapping the world model (default: none,
      imagination reads the online model).
    uncertainty_calibration: the acting policy's `UncertaintyCalibration`,
      fed after each world-model update, or None.
    strategy: a tf.distribute strategy to run the updates under (the models
      must have been built in its scope), or None for one device. With
      more than one replica `jit_compile` is not used: XLA cannot compile
      a step whose variables live on several CPU devices (MirroredStrategy
      fails with "Trying to access resource ... located in device"), and
      TPUStrategy compiles its replicas with XLA by itself.
  """

  def __init__(self, world_model: WorldModel, actor_critic: ActorCritic,
               layout: OptimizerLayout, jit_compile: bool = True,
               name: str = 'learner', *,
               target: Optional[WorldModelTarget] = None,
               uncertainty_calibration: Optional[
                   policy_lib.UncertaintyCalibration] = None,
               strategy: Optional[tf.distribute.Strategy] = None):
    super().__init__(name=name)
    self.strategy = strategy
    self.world_model = world_model
    self.actor_critic = actor_critic
    self.layout = layout
    self.target = target if target is not None else NoTarget(world_model)
    self.uncertainty_calibration = uncertainty_calibration
    self.train_steps = tf.Variable(
        0, dtype=tf.int64, trainable=False, name='train_steps',
        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    self._jit_compile = jit_compile
    if (jit_compile and strategy is not None and
        strategy.num_replicas_in_sync > 1):
      warnings.warn(
          f'{type(strategy).__name__} with {strategy.num_replicas_in_sync} '
          'replicas: the train step is compiled without XLA (run.jit only '
          'applies to one replica; TPUs compile their replicas anyway).',
          RuntimeWarning)
    self.train_world_model = self._compile(
        lambda batch: self._update(batch, None, WORLD_MODEL_ONLY))
    self.train = self._compile(
        lambda batch, seed: self._update(batch, seed, ALL))
    # Compiled updates of other `Updates`, keyed by their names (string
    # keys: tf.Module tracks this dict).
    self._update_functions: Dict[str, Callable] = {}

  def _groups(self) -> Dict[str, list]:
    ac = self.actor_critic
    return {'world_model': self.world_model.trainable_variables,
            'actor': ac.actor.trainable_variables,
            'critic': ac.critic.trainable_variables}

  def build(self, batch: Dict[str, tf.Tensor]) -> None:
    """Creates every variable (models, optimizer slots) before compiling."""
    ac = self.actor_critic
    latent = self.world_model.world_model_loss(batch)[1]
    flat = tf.reshape(latent, [-1, latent.shape[-1]])
    action = ac.actor(flat).sample(seed=tf.constant([0, 0], tf.int32))
    self.world_model.dynamics(flat, action)
    ac.critic(flat)
    ac.slow_critic(flat)
    for src, dst in zip(ac.critic.variables, ac.slow_critic.variables):
      dst.assign(src)
    if self.target.is_separate:
      self.target.model.world_model_loss(batch)
      self.target.model.dynamics(flat, action)
    self.target.initialize()
    self.layout.build(self._groups())

  def state_variables(self) -> list:
    """Every variable an update can change: the models', the optimizers'
    (moments, step counts) and the learner's own (return scale, counters,
    target model, uncertainty calibration), as the tf.Variables that the
    compiled functions read (Keras 3 variables are unwrapped).

    The object graph misses variables of layers that Keras keeps in plain
    lists (an ensemble's members), so every Keras layer met also adds its
    own variable list, as the trainer's checkpoint does.
    """
    found, seen = [], set()
    for item in tf.train.TrackableView(self).descendants():
      items = item.variables if isinstance(item, keras.layers.Layer) else [
          item]
      for variable in items:
        if isinstance(variable, keras.Variable):
          variable = variable.value
        if isinstance(variable, tf.Variable) and id(variable) not in seen:
          seen.add(id(variable))
          found.append(variable)
    return found

  def compile_train(self, batch: Dict[str, tf.Tensor]) -> None:
    """Compiles `train` for batches shaped as `batch`, changing nothing.

    Runs `train(batch, seed [0, 0])` once, then puts every variable of
    `state_variables` back as it was, so the next `train` call, on a batch
    of the same shapes and dtypes, finds the program compiled and trains
    exactly as without this call. A trainer whose warmup updates the
    world model alone first calls it before that: XLA compiling the full
    step after the world-model step peaked about 150 MiB higher (the
    CartPole run: 2,028 against 1,884 MiB).
    Single device only (a strategy's batch must be distributed).
    """
    if self.strategy is not None:
      raise ValueError('compile_train runs on one device only.')
    variables = self.state_variables()
    saved = [v.numpy() for v in variables]
    outputs = self.train(batch, tf.zeros([2], tf.int32))
    for value in tf.nest.flatten(outputs):
      value.numpy()  # the step has finished before its effects are undone
    for variable, value in zip(variables, saved):
      variable.assign(value)

  def update_function(self, updates: Updates) -> Callable:
    """The compiled update of `updates`: fn(batch, seed) -> metrics.

    `WORLD_MODEL_ONLY` and `ALL` are `train_world_model` and `train`;
    other `Updates` compile on first use, once each.
    """
    if updates == WORLD_MODEL_ONLY:
      return lambda batch, seed: self.train_world_model(batch)
    if updates == ALL:
      return self.train
    if updates.name not in self._update_functions:
      self._update_functions[updates.name] = self._compile(
          lambda batch, seed: self._update(batch, seed, updates))
    return self._update_functions[updates.name]

  def _compile(self, update: Callable) -> Callable:
    """tf.function of `update(*args) -> metrics`, run once per replica.

    With a strategy, the arguments are distributed values (a batch from
    `distribute_batch`) or tensors every replica sees whole (the seed);
    the metrics are the mean over replicas.
    """
    strategy = self.strategy

    def replicated(*args):
      per_replica = strategy.run(update, args=args)
      return {name: strategy.reduce(tf.distribute.ReduceOp.MEAN, value,
                                    axis=None)
              for name, value in per_replica.items()}

    body, jit = update, self._jit_compile
    if strategy is not None:
      body = replicated
      jit = jit and strategy.num_replicas_in_sync == 1
    # AutoGraph off: every loop and branch of a step is a tf.while_loop or
    # tf.cond already, or runs over Python values; converting the source
    # of each function it calls would only add to the trace time.
    return tf.function(_with_xla_sampling(body) if jit else body,
                       jit_compile=jit, autograph=False)

  # -- one update -----------------------------------------------------------

  def _update(self, batch, seed, updates: Updates):
    """Updates the parts `updates` names on one batch -> metrics."""
    if updates == Updates(False, False, False):
      return {}
    if self.layout.joint:
      metrics, applied = self._update_jointly(batch, seed, updates)
    else:
      metrics, applied = self._update_in_turn(batch, seed, updates)
    self.train_steps.assign_add(1)
    metrics['learner/nonfinite'] = 1.0 - tf.cast(
        tf.reduce_all(tf.stack(applied)), tf.float32)
    return metrics

  def _real(self, batch, latent):
    """The real-terms input of `ActorCritic.train`, or None."""
    return (batch, latent) if self.actor_critic.real_terms else None

  def _after_world_model_update(self, batch, latent, metrics):
    if self.uncertainty_calibration is not None:
      metrics.update(self.uncertainty_calibration.observe(
          self.world_model, batch, latent))

  def _update_in_turn(self, batch, seed, updates):
    """The world model steps first; actor and critic then imagine in it."""
    metrics, applied = {}, []
    if updates.world_model:
      latent, metrics = self.target.train(batch)
      applied.append(metrics['world_model/applied'] > 0)
      self._after_world_model_update(batch, latent, metrics)
    else:
      # The world model's latents of the batch, as in training (recurrent
      # representations need the whole sequence).
      latent = self.world_model.world_model_loss(batch)[1]
    if updates.actor_critic:
      latent = tf.stop_gradient(latent)
      metrics.update(self.actor_critic.train(
          self.target.model, *start_states(batch, latent), seed,
          self._real(batch, latent), actor=updates.actor,
          critic=updates.critic))
      applied += [metrics[f'{part}/applied'] > 0 for part, on in (
          ('actor', updates.actor), ('critic', updates.critic)) if on]
    return metrics, applied

  def _update_jointly(self, batch, seed, updates):
    """Every loss on the models before the update, applied in one step."""
    metrics, losses = {}, {}
    latent = None
    if not updates.world_model:
      latent = self.world_model.world_model_loss(batch)[1]
    with tf.GradientTape(persistent=True) as tape:
      if updates.world_model:
        losses['world_model'], latent, wm_metrics = (
            self.world_model.world_model_loss(batch))
        metrics.update(wm_metrics)
      if updates.actor_critic:
        latent = tf.stop_gradient(latent)
        (actor_loss, critic_loss), ac_metrics = self.actor_critic.loss(
            self.target.model, *start_states(batch, latent), seed,
            self._real(batch, latent))
        metrics.update(ac_metrics)
        if updates.actor:
          losses['actor'] = actor_loss
        if updates.critic:
          losses['critic'] = critic_loss
    applied = list(self.layout.apply(tape, losses, self._groups(),
                                     metrics).values())
    del tape
    if updates.world_model:
      self.target.update()
      self._after_world_model_update(batch, latent, metrics)
    if updates.critic:
      self.actor_critic.update_slow_critic()
    return metrics, applied
