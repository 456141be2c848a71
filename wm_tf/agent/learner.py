"""The update step: which loss trains which variables, with which optimizer.

Three parts, three losses:
  world model <- world-model NLL;
  actor       <- imagined returns (through the dynamics) or REINFORCE, and
                 in 'dyna' mode an advantage-weighted likelihood of real
                 actions;
  critic      <- value regression on imagined (and real) return targets.
The optimizer layout (`wm_tf.agent.optimizers`) decides which gradients
reach which variables: by default each loss is differentiated w.r.t. its own
part only, so actor and critic losses never change the world model even
though they are computed through it.

Alternatives, each chosen by the builder from a registry:
  * the imagination mode (`wm_tf.agent.imagination.IMAGINATION_MODES`):
    how imagined and real loss terms mix;
  * the optimizer layout (`wm_tf.agent.optimizers.OPTIMIZER_LAYOUTS`);
  * the world model imagination runs in (`wm_tf.agent.targets`).

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

from wm_tf import distributions, losses, quantiles, replicas
from wm_tf import returns as returns_lib
from wm_tf.agent import policy as policy_lib
from wm_tf.agent.imagination import BackpropMode, ImaginationMode, imagine
from wm_tf.agent.optimizers import (PARTS, OptimizerLayout, OptimizerSettings,
                                    SeparateOptimizers, make_optimizer)
from wm_tf.agent.targets import NoTarget, WorldModelTarget
from wm_tf.world_model import WorldModel

__all__ = ['ActorCriticSettings', 'Learner', 'OptimizerSettings',
           'make_optimizer']


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
  unroll: bool = True  # imagination: unrolled, or a tf.while_loop


def _with_xla_sampling(function: Callable) -> Callable:
  """`function`, tracing under `distributions.xla_sampling()`: for bodies
  of tf.functions that XLA always compiles."""

  def traced(*args):
    with distributions.xla_sampling():
      return function(*args)

  return traced


def _finite(x: tf.Tensor) -> tf.Tensor:
  return tf.reduce_all(tf.math.is_finite(x))


class Learner(tf.Module):
  """Owns the models' optimizers and runs the compiled train steps.

  `train_world_model(batch)` updates the world model only (warmup);
  `train(batch, seed)` updates world model, actor and critic in one
  compiled program; `update_function(wm, actor, critic)` gives the compiled
  update of any subset of the parts, called as `fn(batch, seed)`. Each
  returns {metric name: scalar}.

  Args:
    world_model, actor, critic, slow_critic: the models.
    settings: imagination and return settings.
    world_model_optimizer, actor_optimizer, critic_optimizer: settings of
      the three optimizers (a single-optimizer layout uses the first).
    jit_compile: compile the updates with XLA.
    mode: an `ImaginationMode` (default 'backprop').
    optimizer_layout: the registry class of the layout (default separate).
    alpha, beta: loss scales of actor and critic for the 'single' layout.
    target: a `WorldModelTarget` to imagine in (default: the online model).
    real_critic_term: compute the real-sequence terms even if the mode
      does not use real data (for a warmup that mixes real returns in).
    uncertainty_calibration: an `UncertaintyCalibration` that every
      world-model update feeds with u(s_t, a_t) of the batch (the acting
      policy's threshold), or None.
    strategy: a tf.distribute strategy to run the updates under (the models
      must have been built in its scope), or None for one device. With
      more than one replica `jit_compile` is not used: XLA cannot compile
      a step whose variables live on several CPU devices (MirroredStrategy
      fails with "Trying to access resource ... located in device"), and
      TPUStrategy compiles its replicas with XLA by itself.
  """

  def __init__(self, world_model: WorldModel, actor, critic, slow_critic,
               settings: ActorCriticSettings,
               world_model_optimizer: OptimizerSettings,
               actor_optimizer: OptimizerSettings,
               critic_optimizer: OptimizerSettings,
               jit_compile: bool = True, name: str = 'learner', *,
               mode: Optional[ImaginationMode] = None,
               optimizer_layout: Callable[..., OptimizerLayout] = (
                   SeparateOptimizers),
               alpha: float = 1.0, beta: float = 1.0,
               target: Optional[WorldModelTarget] = None,
               real_critic_term: bool = False,
               uncertainty_calibration: Optional[
                   policy_lib.UncertaintyCalibration] = None,
               strategy: Optional[tf.distribute.Strategy] = None):
    super().__init__(name=name)
    self.strategy = strategy
    self.world_model = world_model
    self.actor = actor
    self.critic = critic
    self.slow_critic = slow_critic
    self.settings = settings
    self.mode = mode if mode is not None else BackpropMode()
    self.uses_real_data = bool(self.mode.uses_real_data or real_critic_term)
    self.target = target if target is not None else NoTarget(world_model)
    self.uncertainty_calibration = uncertainty_calibration
    self.layout = optimizer_layout(
        {'world_model': world_model_optimizer, 'actor': actor_optimizer,
         'critic': critic_optimizer}, alpha=alpha, beta=beta)
    self.world_model_optimizer = self.layout.optimizers['world_model']
    self.actor_optimizer = self.layout.optimizers['actor']
    self.critic_optimizer = self.layout.optimizers['critic']
    # Every replica assigns these the same values; under a strategy the
    # first replica's write is kept (ONLY_FIRST_REPLICA).
    first = tf.VariableAggregation.ONLY_FIRST_REPLICA
    # Running percentile range of the imagined returns (for normalisation).
    self.return_scale = tf.Variable(1.0, trainable=False, name='return_scale',
                                    aggregation=first)
    self.train_steps = tf.Variable(0, dtype=tf.int64, trainable=False,
                                   name='train_steps', aggregation=first)
    # The warmup's weight on the real-return critic term (see warmup.py).
    self.critic_real_mix = tf.Variable(0.0, trainable=False,
                                       name='critic_real_mix',
                                       aggregation=first)
    self._jit_compile = jit_compile
    if (jit_compile and strategy is not None and
        strategy.num_replicas_in_sync > 1):
      warnings.warn(
          f'{type(strategy).__name__} with {strategy.num_replicas_in_sync} '
          'replicas: the train step is compiled without XLA (run.jit only '
          'applies to one replica; TPUs compile their replicas anyway).',
          RuntimeWarning)
    self.train_world_model = self._compile(
        lambda batch: self._train_parts(batch, None, ('world_model',)))
    self.train = self._compile(
        lambda batch, seed: self._train_parts(batch, seed, PARTS))
    # Compiled updates of other subsets of parts, keyed by their names
    # joined with '+' (string keys: tf.Module tracks this dict).
    self._update_functions: Dict[str, Callable] = {}

  def _groups(self) -> Dict[str, list]:
    return {'world_model': self.world_model.trainable_variables,
            'actor': self.actor.trainable_variables,
            'critic': self.critic.trainable_variables}

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

  def update_function(self, world_model: bool, actor: bool, critic: bool
                      ) -> Callable:
    """The compiled update of the chosen parts: fn(batch, seed) -> metrics.

    (True, False, False) and (True, True, True) are `train_world_model`
    and `train`; other subsets compile on first use, once each.
    """
    key = (bool(world_model), bool(actor), bool(critic))
    if key == (True, False, False):
      return lambda batch, seed: self.train_world_model(batch)
    if key == (True, True, True):
      return self.train
    parts = tuple(p for p, on in zip(PARTS, key) if on)
    name = '+'.join(parts) or 'nothing'
    if name not in self._update_functions:
      self._update_functions[name] = self._compile(
          lambda batch, seed: self._train_parts(batch, seed, parts))
    return self._update_functions[name]

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
    return tf.function(_with_xla_sampling(body) if jit else body,
                       jit_compile=jit)

  # -- one update of some parts ---------------------------------------------

  def _train_parts(self, batch, seed, parts):
    """Updates `parts` (names from PARTS) on one batch.

    The layout groups the parts into stages; each stage's losses are
    computed under one tape and applied together, in order. Actor and
    critic start imagining from the batch's latent states.
    """
    metrics = {}
    applied = []
    latent = None
    groups = self._groups()
    if not parts:
      return metrics
    for stage in self.layout.stages(parts):
      if 'world_model' not in stage and latent is None:
        # No world-model update: its latents of the batch, as in training
        # (recurrent representations need the whole sequence).
        latent = self.world_model.world_model_loss(batch)[1]
      with tf.GradientTape(persistent=True) as tape:
        losses = {}
        if 'world_model' in stage:
          loss, latent, wm_metrics = self.world_model.world_model_loss(batch)
          losses['world_model'] = loss
          metrics.update(wm_metrics)
        if 'actor' in stage or 'critic' in stage:
          actor_loss, critic_loss = self._actor_critic_losses_from_batch(
              batch, tf.stop_gradient(latent), seed, metrics)
          if 'actor' in stage:
            losses['actor'] = actor_loss
          if 'critic' in stage:
            losses['critic'] = critic_loss
      applied += list(self.layout.apply(tape, losses, groups, metrics).values())
      del tape
      if 'world_model' in stage:
        self.target.update()
        if self.uncertainty_calibration is not None:
          metrics.update(self._calibrate_uncertainty(batch, latent))
      if 'critic' in stage:
        self._update_slow_critic()
    self.train_steps.assign_add(1)
    metrics['learner/nonfinite'] = 1.0 - tf.cast(
        tf.reduce_all(tf.stack(applied)), tf.float32)
    return metrics

  def _calibrate_uncertainty(self, batch, latent):
    """Feeds u(s_t, a_t) of the batch's real transitions to the calibration.

    latent [B, T, D]; a_t = batch['action'][:, t] was taken in s_t where
    the transition t -> t+1 is real (not is_first_{t+1}). Returns the
    metrics: the new threshold, and the fraction of those transitions
    whose u exceeds it (near 1 - quantile while the model's std is
    steady; lower while it falls, as the running threshold lags).
    """
    states = tf.stop_gradient(latent[:, :-1])
    actions = tf.cast(batch['action'], tf.float32)[:, :-1]
    valid = tf.logical_not(tf.cast(batch['is_first'], tf.bool)[:, 1:])
    uncertainty = policy_lib.next_state_uncertainty(
        self.world_model, states, actions)
    threshold = self.uncertainty_calibration.update(uncertainty, valid)
    above = tf.cast(tf.logical_and(valid, uncertainty > threshold),
                    tf.float32)
    return {'learner/uncertainty_threshold': threshold,
            'learner/uncertain_fraction': losses.masked_mean(
                above, tf.cast(valid, tf.float32))}

  def _actor_critic_losses_from_batch(self, batch, latent, seed, metrics):
    """Actor and critic losses, imagining from every latent of the batch.

    Args:
      batch: the replay batch [B, T, ...].
      latent: its latent states [B, T, D] (gradient stopped).
    """
    start = tf.reshape(latent, [-1, latent.shape[-1]])
    start_alive = 1.0 - tf.reshape(
        tf.cast(batch['is_terminal'], tf.float32), [-1])
    real = (batch, latent) if self.uses_real_data else None
    return self._actor_critic_losses(start, start_alive, seed, metrics, real)

  # -- actor and critic -----------------------------------------------------

  def _actor_critic_update(self, start, start_alive, seed, metrics):
    """Imagines from `start` [N, D] and updates actor and critic only.

    `start_alive` [N] is 0 for terminal start states, whose rollouts are
    masked out of both losses. Returns {part: applied}.
    """
    with tf.GradientTape(persistent=True) as tape:
      actor_loss, critic_loss = self._actor_critic_losses(
          start, start_alive, seed, metrics)
    applied = self.layout.apply(
        tape, {'actor': actor_loss, 'critic': critic_loss}, self._groups(),
        metrics)
    del tape
    self._update_slow_critic()
    return applied

  @property
  def _value_net(self):
    return (self.slow_critic if self.settings.slow_critic_fraction > 0
            else self.critic)

  def _actor_critic_losses(self, start, start_alive, seed, metrics,
                           real=None):
    """(actor loss, critic loss) from imagination (and real sequences).

    Args:
      start: [N, D] latent start states.
      start_alive: [N], 0 for terminal start states.
      seed: int32 [2].
      metrics: gets the actor, critic and imagination metrics.
      real: None, or (batch [B, T, ...], latent [B, T, D]) for the real
        terms; the mode mixes them in (`ImaginationMode.mix`).
    """
    s = self.settings
    model = self.target.model  # the world model to imagine in
    traj = imagine(model.dynamics, self.actor, start, s.horizon,
                   replicas.per_replica_seed(seed), s.sample_dynamics,
                   unroll=s.unroll)
    states = traj['states']  # [N, H+1, D]
    rewards = model.reward(states[:, 1:]).mean()  # [N, H]
    continues = model.continue_probability(states[:, 1:])  # [N, H]
    discounts = s.gamma * continues
    values = self._value_net(states).mean()  # [N, H+1]
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

    real_actor = real_critic = None
    if real is not None:
      real_actor, real_critic = self._real_terms(*real, scale, metrics)
      metrics['actor/imagined_loss'] = actor_loss
      metrics['critic/imagined_loss'] = critic_loss
    actor_loss, critic_loss = self.mode.mix(
        actor_loss, critic_loss, real_actor, real_critic,
        self.critic_real_mix)
    if real is not None:
      metrics['learner/critic_real_weight'] = tf.convert_to_tensor(
          self.mode.critic_real_weight(self.critic_real_mix), tf.float32)

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
    return actor_loss, critic_loss

  def real_value_targets(self, batch, latent):
    """Value targets of the replayed sequences themselves.

    The step format (`wm_tf.world_model`): r_{t+1} and is_terminal_{t+1}
    belong to the transition t -> t+1, which is real unless is_first_{t+1}.
    Over the T-1 transitions of each sequence,

        rewards_t   = r_{t+1}, discounts_t = gamma (1 - is_terminal_{t+1}),
        values      = V(s_0) ... V(s_{T-1})   (slow critic, [B, T]),

    fed to the configured return estimator (`returns.type`). Where the
    transition t -> t+1 is not real (an episode ended at t) the inputs are
    set to reward V(s_t) and discount 0, so the target of s_t is V(s_t) and
    earlier targets bootstrap from it instead of crossing the boundary.

    Args:
      batch: 'reward', 'is_first', 'is_terminal' [B, T].
      latent: [B, T, D] latent states of the batch.

    Returns:
      (targets [B, T-1], weights [B, T-1], values [B, T]); weight_t is 1
      where s_t is not terminal and the transition t -> t+1 is real.
    """
    s = self.settings
    values = self._value_net(latent).mean()  # [B, T]
    reward = tf.cast(batch['reward'], tf.float32)[:, 1:]
    terminal = tf.cast(batch['is_terminal'], tf.float32)
    real_step = 1.0 - tf.cast(batch['is_first'], tf.float32)[:, 1:]
    rewards = tf.where(real_step > 0, reward, values[:, :-1])
    discounts = real_step * s.gamma * (1.0 - terminal[:, 1:])
    targets = returns_lib.value_targets(
        s.returns_type, rewards, values, discounts, lambda_=s.lambda_,
        n=s.n_step)
    weights = real_step * (1.0 - terminal[:, :-1])
    return targets, weights, values

  def _real_terms(self, batch, latent, scale, metrics):
    """(actor term, critic term) on the replayed sequences.

    critic: -mean_t w_t log p(R_t | s_t), R_t from `real_value_targets`.
    actor:  -mean_t w_t [log pi(a_t | s_t) g((R_t - V(s_t)) / scale)
                         + entropy_scale * H(pi(. | s_t))],
    a_t the replayed action taken in s_t, g the mode's advantage weighting
    (`wm_tf.losses.advantage_weighted_nll`).
    """
    s = self.settings
    latent = tf.stop_gradient(latent)
    targets, weights, values = self.real_value_targets(batch, latent)
    targets = tf.stop_gradient(targets)
    states = latent[:, :-1]
    critic_term = -tf.reduce_mean(
        weights * self.critic(states).log_prob(targets))
    policy = self.actor(states)
    action = tf.cast(batch['action'], tf.float32)[:, :-1]
    advantage = (targets - values[:, :-1]) / scale
    actor_term = losses.advantage_weighted_nll(
        policy.log_prob(action), advantage, policy.entropy(), weights,
        s.entropy, self.mode.real_actor_advantage)
    metrics.update({
        'actor/real_loss': actor_term,
        'critic/real_loss': critic_term,
        'critic/real_target_mean': tf.reduce_mean(targets),
    })
    return actor_term, critic_term

  def _update_return_scale(self, targets):
    if not self.settings.return_normalization:
      return tf.constant(1.0)
    # Percentiles of the global batch's returns: every replica's targets.
    # Lower nearest-rank 5th and 95th percentiles, by bisection rather
    # than a sort (`wm_tf.quantiles`; a sort is slow under XLA on CPU).
    flat = replicas.gather(tf.reshape(tf.stop_gradient(targets), [-1]))
    low, high = tf.unstack(quantiles.percentiles(flat, (0.05, 0.95)))
    new = 0.99 * self.return_scale + 0.01 * (high - low)
    # A non-finite batch must not poison the running scale (the bisection
    # does not propagate NaNs, so the returns themselves are checked).
    keep = tf.logical_and(_finite(flat), _finite(new))
    self.return_scale.assign(tf.where(keep, new, self.return_scale))
    return tf.maximum(1.0, self.return_scale)

  def _update_slow_critic(self):
    mix = self.settings.slow_critic_fraction
    if mix <= 0:
      return
    for src, dst in zip(self.critic.variables, self.slow_critic.variables):
      replicas.assign(dst, (1.0 - mix) * dst + mix * src)
