"""The actor-critic learner: actor, critic and slow critic trained in imagination.

`ActorCritic.train(world_model, start, start_alive, seed)` imagines
`horizon` steps from latent start states in `world_model` (the online
model or a target, `wm_tf.agent.targets`), computes the loss terms and
steps the actor's and the critic's optimizers; the world model is only
read. Its loss is a dict of named terms:

    actor        -mean_t w_t (objective_t + entropy_scale H_t), imagined;
    critic       -mean_t w_t log p(R_t | s_t), imagined;
    critic_slow  -mean_t w_t log p(sg(v_slow(s_t)) | s_t), imagined: pulls
                 the critic towards its slow copy's mean (computed only
                 when its scale is above 0 and the slow copy moves);
    actor_real   the advantage-weighted likelihood of the replayed actions;
    critic_real  -mean_t w_t log p(R_t | s_t) on the replayed sequences,

the 'real' ones only when real terms are computed (`real_terms`: Dyna
imagination or a warmup that mixes real returns in). The real ratio is the
fraction of a part's loss taken from its real term, and each term has its
scale c_k (`loss_scales`, the config's `actor_critic.loss_scales`):

    actor loss  = c_actor (1 - rho) actor + c_actor_real rho actor_real,
                  rho = real_ratio;
    critic loss = (1 - w) (c_critic critic + c_critic_slow critic_slow)
                  + c_critic_real w critic_real,
                  w = rho + (1 - rho) m,  m = `warmup_real_ratio`,

m being set by the warmup schedule before each update ('gradual').
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Tuple

import tensorflow as tf

from wm_tf import losses, quantiles, replicas
from wm_tf import returns as returns_lib
from wm_tf.agent.imagination import imagine

Terms = Dict[str, tf.Tensor]


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


def imagined_terms(targets: tf.Tensor, baseline: tf.Tensor,
                   weights: tf.Tensor, log_probs: tf.Tensor,
                   entropies: tf.Tensor, value_log_prob: tf.Tensor,
                   scale: tf.Tensor, gradient: str,
                   entropy_scale: float) -> Terms:
  """The imagined terms {'actor', 'critic'}, scalars.

    actor  = -mean(w * (objective + entropy_scale * entropy)),
             objective = R / scale ('dynamics': differentiated through
             the imagined states) or log pi(a) * sg((R - V) / scale)
             ('reinforce');
    critic = -mean(w * log p(sg(R) | sg(s))).

  Args:
    targets: R [N, H], value targets of the imagined states s_0..s_{H-1}.
    baseline: V(s_0..s_{H-1}) [N, H].
    weights: w [N, H], probability that state t is still in the episode.
    log_probs, entropies: [N, H] of the actions taken in s_0..s_{H-1}.
    value_log_prob: log p(sg(R_t) | sg(s_t)) of the critic, [N, H].
    scale: the return scale (>= 1), scalar.
    gradient: 'dynamics' or 'reinforce'.
    entropy_scale: weight of the entropy bonus.
  """
  if gradient == 'dynamics':
    objective = targets / scale
  else:
    advantage = tf.stop_gradient((targets - baseline) / scale)
    objective = log_probs * advantage
  actor = -tf.reduce_mean(weights * (objective + entropy_scale * entropies))
  critic = -tf.reduce_mean(weights * value_log_prob)
  return {'actor': actor, 'critic': critic}


def critic_real_ratio(real_ratio: float, warmup_real_ratio) -> tf.Tensor:
  """w = rho + (1 - rho) m: the critic's fraction from its real term."""
  return tf.convert_to_tensor(
      real_ratio + (1.0 - real_ratio) * warmup_real_ratio, tf.float32)


# The named terms of the actor-critic loss, each weighed by its scale.
LOSS_TERMS = ('actor', 'critic', 'critic_slow', 'actor_real', 'critic_real')
DEFAULT_LOSS_SCALES = dict({name: 1.0 for name in LOSS_TERMS},
                           critic_slow=0.0)


def mix_real(terms: Terms, real_ratio: float, warmup_real_ratio,
             scales: Dict[str, float] = None) -> Tuple[tf.Tensor, tf.Tensor]:
  """(actor loss, critic loss) from the named terms.

  Without 'actor_real' / 'critic_real' the imagined terms are the losses;
  with them, each part's loss is (1 - ratio) imagined + ratio real (the
  ratios of the module docstring). Each term is multiplied by its scale
  in `scales` ({term: scale} over LOSS_TERMS; all 1 when None).
  """
  c = DEFAULT_LOSS_SCALES if scales is None else scales
  actor, critic = c['actor'] * terms['actor'], c['critic'] * terms['critic']
  if 'critic_slow' in terms:
    critic = critic + c['critic_slow'] * terms['critic_slow']
  if 'actor_real' in terms and real_ratio > 0:
    actor = ((1.0 - real_ratio) * actor
             + real_ratio * (c['actor_real'] * terms['actor_real']))
  if 'critic_real' in terms:
    w = critic_real_ratio(real_ratio, warmup_real_ratio)
    critic = (1.0 - w) * critic + w * (c['critic_real'] * terms['critic_real'])
  return actor, critic


class ActorCritic(tf.Module):
  """Actor, critic, slow critic, return scale and their optimizers.

  Args:
    actor: state [N, D] -> action distribution over [N, A].
    critic, slow_critic: value heads, state [..., D] -> distribution [...].
    settings: imagination and return settings.
    real_terms: compute the real terms (Dyna, or a warmup's real mix).
    real_ratio: rho, the fraction of actor and critic loss from real terms.
    real_actor_advantage: 'positive' or 'signed' weighting of the real
      actor term (`wm_tf.losses.advantage_weighted_nll`).
    loss_scales: {term: scale}, exactly one for each of LOSS_TERMS
      (`wm_tf.losses.LossScaleError` otherwise); None: all 1.
  """

  def __init__(self, actor, critic, slow_critic,
               settings: ActorCriticSettings, *, real_terms: bool = False,
               real_ratio: float = 0.0,
               real_actor_advantage: str = 'positive',
               loss_scales: Dict[str, float] = None,
               name: str = 'actor_critic'):
    super().__init__(name=name)
    scales = DEFAULT_LOSS_SCALES if loss_scales is None else loss_scales
    losses.check_loss_scales('actor_critic.loss_scales', scales, LOSS_TERMS)
    self.loss_scales = dict(scales)
    self.actor = actor
    self.critic = critic
    self.slow_critic = slow_critic
    self.settings = settings
    self.real_terms = bool(real_terms)
    self.real_ratio = float(real_ratio)
    self.real_actor_advantage = real_actor_advantage
    self.actor_optimizer = self.critic_optimizer = None
    self.clip_norms = {}
    # Every replica assigns these the same values; under a strategy the
    # first replica's write is kept (ONLY_FIRST_REPLICA).
    first = tf.VariableAggregation.ONLY_FIRST_REPLICA
    # Running percentile range of the imagined returns (for normalisation).
    self.return_scale = tf.Variable(1.0, trainable=False, name='return_scale',
                                    aggregation=first)
    # m: the warmup's real ratio of the critic (see warmup.py, 'gradual').
    self.warmup_real_ratio = tf.Variable(
        0.0, trainable=False, name='warmup_real_ratio', aggregation=first)

  def use_optimizers(self, actor_optimizer, critic_optimizer,
                     actor_clip_norm: float, critic_clip_norm: float) -> None:
    """The Keras optimizers `train` steps with, and their clip norms."""
    self.actor_optimizer = actor_optimizer
    self.critic_optimizer = critic_optimizer
    self.clip_norms = {'actor': float(actor_clip_norm),
                       'critic': float(critic_clip_norm)}

  def train(self, world_model, start: tf.Tensor, start_alive: tf.Tensor,
            seed: tf.Tensor, real=None, actor: bool = True,
            critic: bool = True) -> Dict[str, tf.Tensor]:
    """Imagines from `start` in `world_model`; steps actor and/or critic.

    Args:
      world_model: the `WorldModel` to imagine in (read only).
      start: [N, D] latent start states; start_alive [N], 0 for terminal
        ones, whose rollouts are masked out of every imagined term.
      seed: int32 [2].
      real: None, or (batch [B, T, ...], latent [B, T, D]) for the real
        terms (needed when `real_terms`).
      actor, critic: which parts to step.

    Returns:
      metrics {name: scalar}, with '<part>/grad_norm' and
      '<part>/applied' (1.0 if the step was taken) of each stepped part.
    """
    with tf.GradientTape(persistent=True) as tape:
      (actor_loss, critic_loss), metrics = self.loss(
          world_model, start, start_alive, seed, real)
    for part, on, loss, optimizer, variables in (
        ('actor', actor, actor_loss, self.actor_optimizer,
         self.actor.trainable_variables),
        ('critic', critic, critic_loss, self.critic_optimizer,
         self.critic.trainable_variables)):
      if on:
        applied, metrics[f'{part}/grad_norm'] = replicas.clipped_update(
            optimizer, tape, loss, variables, self.clip_norms[part])
        metrics[f'{part}/applied'] = tf.cast(applied, tf.float32)
    del tape
    if critic:
      self.update_slow_critic()
    return metrics

  @property
  def value_net(self):
    """The head value targets bootstrap from: slow critic, if it moves."""
    return (self.slow_critic if self.settings.slow_critic_fraction > 0
            else self.critic)

  def loss(self, world_model, start, start_alive, seed, real=None
           ) -> Tuple[Tuple[tf.Tensor, tf.Tensor], Dict[str, tf.Tensor]]:
    """((actor loss, critic loss), metrics) from imagination (and real data).

    Arguments as `train`. The metrics hold every named term
    ('actor/imagined_loss', 'actor/real_loss', ...) with the real ones.
    """
    s = self.settings
    traj = imagine(world_model.dynamics, self.actor, start, s.horizon,
                   replicas.per_replica_seed(seed), s.sample_dynamics,
                   unroll=s.unroll)
    states = traj['states']  # [N, H+1, D]
    rewards = world_model.reward(states[:, 1:]).mean()  # [N, H]
    continues = world_model.continue_probability(states[:, 1:])  # [N, H]
    values = self.value_net(states).mean()  # [N, H+1]
    targets = returns_lib.value_targets(
        s.returns_type, rewards, values, s.gamma * continues,
        lambda_=s.lambda_, n=s.n_step)  # [N, H]
    # weight_t: probability that imagined state t is still in the episode.
    alive = tf.concat([start_alive[:, None], continues[:, :-1]], 1)
    weights = tf.stop_gradient(tf.math.cumprod(alive, axis=1))  # [N, H]
    scale = self._update_return_scale(targets)
    value_dist = self.critic(tf.stop_gradient(states[:, :-1]))
    terms = imagined_terms(
        targets, values[:, :-1], weights, traj['log_probs'],
        traj['entropies'], value_dist.log_prob(tf.stop_gradient(targets)),
        scale, s.actor_gradient, s.entropy)
    if self.loss_scales['critic_slow'] > 0 and s.slow_critic_fraction > 0:
      # With a moving slow copy, `values` are its means already.
      slow = tf.stop_gradient(values[:, :-1])
      terms['critic_slow'] = -tf.reduce_mean(weights * value_dist.log_prob(slow))
    metrics = {}
    if real is not None:
      real_terms, metrics = self.real_loss_terms(*real, scale)
      terms.update(real_terms)
      metrics['actor/imagined_loss'] = terms['actor']
      metrics['critic/imagined_loss'] = terms['critic']
      metrics['critic/real_ratio'] = critic_real_ratio(
          self.real_ratio, self.warmup_real_ratio)
    actor_loss, critic_loss = mix_real(terms, self.real_ratio,
                                       self.warmup_real_ratio,
                                       self.loss_scales)
    if 'critic_slow' in terms:
      metrics['critic/slow_loss'] = terms['critic_slow']
    metrics.update({
        'actor/loss': actor_loss,
        'actor/entropy': tf.reduce_mean(traj['entropies']),
        'actor/return_scale': scale,
        'critic/loss': critic_loss,
        'critic/value_mean': tf.reduce_mean(value_dist.mean()),
        'imagination/return_mean': tf.reduce_mean(targets),
        'imagination/reward_mean': tf.reduce_mean(rewards),
        'imagination/continue_mean': tf.reduce_mean(continues),
        'imagination/weight_mean': tf.reduce_mean(weights),
    })
    return (actor_loss, critic_loss), metrics

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
    values = self.value_net(latent).mean()  # [B, T]
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

  def real_loss_terms(self, batch, latent, scale
                      ) -> Tuple[Terms, Dict[str, tf.Tensor]]:
    """({'actor_real', 'critic_real'}, metrics) on the replayed sequences.

    critic_real: -mean_t w_t log p(R_t | s_t), R_t from `real_value_targets`.
    actor_real:  -mean_t w_t [log pi(a_t | s_t) g((R_t - V(s_t)) / scale)
                              + entropy_scale * H(pi(. | s_t))],
    a_t the replayed action taken in s_t, g the advantage weighting
    (`wm_tf.losses.advantage_weighted_nll`).
    """
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
        self.settings.entropy, self.real_actor_advantage)
    metrics = {
        'actor/real_loss': actor_term,
        'critic/real_loss': critic_term,
        'critic/real_target_mean': tf.reduce_mean(targets),
    }
    return {'actor_real': actor_term, 'critic_real': critic_term}, metrics

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
    finite = lambda x: tf.reduce_all(tf.math.is_finite(x))
    keep = tf.logical_and(finite(flat), finite(new))
    self.return_scale.assign(tf.where(keep, new, self.return_scale))
    return tf.maximum(1.0, self.return_scale)

  def update_slow_critic(self) -> None:
    """slow <- (1 - f) slow + f critic, f = slow_critic_fraction (if > 0)."""
    mix = self.settings.slow_critic_fraction
    if mix <= 0:
      return
    for src, dst in zip(self.critic.variables, self.slow_critic.variables):
      replicas.assign(dst, (1.0 - mix) * dst + mix * src)


def start_states(batch: Dict[str, tf.Tensor], latent: tf.Tensor
                 ) -> Tuple[tf.Tensor, tf.Tensor]:
  """Every latent of the batch as an imagination start.

  Args:
    batch: 'is_terminal' [B, T].
    latent: [B, T, D].

  Returns:
    (start [B*T, D], start_alive [B*T], 0 where s_t is terminal).
  """
  start = tf.reshape(latent, [-1, latent.shape[-1]])
  alive = 1.0 - tf.reshape(tf.cast(batch['is_terminal'], tf.float32), [-1])
  return start, alive
