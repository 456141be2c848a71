"""The world model: encoder -> representation -> latent, dynamics and heads.

Batches are time-major within each sequence: every tensor is [B, T, ...],
T the time axis, holding the replay's step records (see
`wm_tf.runtime.replay`): step t has observation o_t (a dict of keys, each
an entry of the batch: `wm_tf.specs`), the action a_t taken
at o_t, the reward r_t received on arriving at o_t, and flags is_first /
is_terminal.

    o_0 --a_0--> o_1 --a_1--> o_2 ...
         r_1, c_1     r_2, c_2          (c_t = 1 - is_terminal_t)

The transition t -> t+1 is real unless step t+1 starts a new episode.

The loss asks the representation learner for the sequence's latents and
its own loss (`observe_sequence`: one call over [B, T] for stateless
learners, a scan over time resetting at is_first for the RSSM), then the
dynamics model for its term on the real transitions (`transition_loss`:
the masked NLL, an MSE, or bootstrapped member NLLs), then the heads.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from wm_tf import losses, replicas
from wm_tf.quantiles import order_statistics
from wm_tf.losses import masked_mean  # noqa: F401  (re-exported)


class WorldModel(keras.Model):
  """Holds the world-model components and computes their NLL loss.

  Args:
    encoder: observation dicts {key: [..., *shape]} -> features [..., F]
      (a `wm_tf.components.multi_key.MultiKeyEncoder`: it reads its keys
      of any dict, a whole batch included).
    representation: a representation learner (see
      `wm_tf.components.representation`): features -> latents [..., D],
      and a [B, T] sequence -> training latents plus its own loss.
    dynamics: (latent [..., D], action [..., A]) -> distribution [..., D],
      with `transition_loss` (see `wm_tf.components.dynamics`).
    reward, continue_: heads on latents [..., D].
    decoder: latents [..., D] -> {key: distribution} with `targets`
      (a `MultiKeyDecoder`); its loss is the sum of the keys' NLLs.
    loss_scales: weights of the terms LOSS_TERMS, one each ('dynamics',
      'reward', 'continue', 'decoder'; the representation's own loss
      carries its own weights).
    stop_gradient_target: stop the gradient of the dynamics target.
    predict_continue: whether imagination and planning read the continue
      head (`continue_probability`). False treats every imagined step as
      continuing (for environments that never terminate); the head is
      still trained on the replayed flags and its NLL logged.
    terminal_weight: weight of a terminal step in the continue NLL, a
      weighted mean over the [B, T] steps (1: the plain mean).
    seed: base of the stateless seeds of `world_model_loss` when it is
      called without one: seed [seed, n] at its n-th call (a counter
      variable of this model), so each train step draws fresh bootstrap
      masks and latent samples.
  """

  # The terms `loss_scales` weighs (the representation's own loss carries
  # its own weights).
  LOSS_TERMS = ('dynamics', 'reward', 'continue', 'decoder')

  def __init__(self, encoder, representation, dynamics, reward, continue_,
               decoder, loss_scales: Dict[str, float],
               stop_gradient_target: bool = True,
               predict_continue: bool = True, terminal_weight: float = 1.0,
               seed: int = 0, **kwargs):
    super().__init__(**kwargs)
    self.encoder = encoder
    self.representation = representation
    self.dynamics = dynamics
    self.reward = reward
    self.continue_ = continue_
    self.decoder = decoder
    losses.check_loss_scales('world_model.loss_scales', loss_scales,
                             self.LOSS_TERMS)
    self.loss_scales = dict(loss_scales)
    self.stop_gradient_target = stop_gradient_target
    self.predict_continue = bool(predict_continue)
    self.terminal_weight = float(terminal_weight)
    self.seed = int(seed) % (2 ** 31)
    # float32, not int32: target world models mix variables by EMA, which
    # an integer variable cannot take. Counts exactly up to 2^24 calls.
    # Under a tf.distribute strategy every replica counts the same calls.
    self.loss_calls = self.add_weight(
        shape=(), dtype='float32', initializer='zeros', trainable=False,
        name='loss_calls', aggregation='only_first_replica')
    self.optimizer = None  # set by `use_optimizer`; a target model has none
    self.clip_norm = None

  def use_optimizer(self, optimizer, clip_norm: float) -> None:
    """The Keras optimizer `train` steps with, and its gradient clip norm."""
    self.optimizer = optimizer
    self.clip_norm = float(clip_norm)

  def train(self, batch: Dict[str, tf.Tensor],
            seed: Optional[tf.Tensor] = None
            ) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
    """One optimizer step on `world_model_loss(batch, seed)`.

    The gradient is clipped to `clip_norm` and skipped if the loss or its
    norm is not finite (`wm_tf.replicas.clipped_update`).

    Returns:
      (latent states [B, T, D] of the batch, computed before the step;
       metrics: those of `world_model_loss`, 'world_model/grad_norm',
       'world_model/applied', 1.0 if the step was taken, else 0.0, and
       'world_model/continue_at_terminal' (`continue_at_terminal`)).
    """
    if self.optimizer is None:
      raise ValueError(f'{self.name}.train needs an optimizer; allowed: '
                       'call use_optimizer(optimizer, clip_norm) first.')
    with tf.GradientTape() as tape:
      loss, latent, metrics = self.world_model_loss(batch, seed)
    # Of the head before the step, as the other metrics.
    metrics['world_model/continue_at_terminal'] = self.continue_at_terminal(
        tf.stop_gradient(latent), batch['is_terminal'])
    applied, norm = replicas.clipped_update(
        self.optimizer, tape, loss, self.trainable_variables, self.clip_norm)
    metrics['world_model/grad_norm'] = norm
    metrics['world_model/applied'] = tf.cast(applied, tf.float32)
    return latent, metrics

  def continue_nll(self, latent: tf.Tensor, cont: tf.Tensor) -> tf.Tensor:
    """The continue head's NLL of cont [B, T] (1 - is_terminal) given
    latent [B, T, D]: the mean over the steps, a terminal step weighing
    `terminal_weight`."""
    nll = -self.continue_(latent).log_prob(cont)
    if self.terminal_weight == 1.0:
      return tf.reduce_mean(nll)
    return masked_mean(nll, 1.0 + (self.terminal_weight - 1.0) * (1.0 - cont))

  def continue_at_terminal(self, latent: tf.Tensor,
                           is_terminal: tf.Tensor) -> tf.Tensor:
    """The median continue probability of the head at the terminal steps.

    How sharp the continue head is where episodes truly end (0 is sharp).
    Args: latent [B, T, D] and is_terminal [B, T] of a batch. Returns a
    scalar: the lower median of the head's mean over the steps with
    is_terminal set, NaN if the batch has none (averaged over the batches
    that have some: `wm_tf.runtime.metrics.SPARSE_METRICS`).
    """
    probability = tf.reshape(self.continue_(latent).mean(), [-1])
    terminal = tf.reshape(tf.cast(is_terminal, tf.bool), [-1])
    count = tf.reduce_sum(tf.cast(terminal, tf.int32))
    # Other steps sort after every probability: the terminal steps' median
    # is the rank (count - 1) // 2 of the whole vector.
    keyed = tf.where(terminal, probability, tf.fill(tf.shape(probability),
                                                    float('inf')))
    median = order_statistics(keyed, tf.reshape((count - 1) // 2, [1]))[0]
    return tf.where(count > 0, median, float('nan'))

  @property
  def latent_dim(self) -> int:
    return self.representation.latent_dim

  def continue_probability(self, state: tf.Tensor) -> tf.Tensor:
    """P(the episode goes on after reaching `state` [..., D]) -> [...].

    The continue head's mean, or ones if `predict_continue` is False.
    """
    if not self.predict_continue:
      return tf.ones(tf.shape(state)[:-1], tf.float32)
    return self.continue_(state).mean()

  @property
  def recurrent(self) -> bool:
    """Whether the latent state carries history (acting needs its state)."""
    return self.representation.recurrent

  def encode(self, observation: Dict[str, tf.Tensor]) -> tf.Tensor:
    """Latent states [..., D] (the mode) of observation dicts.

    For a recurrent representation this is the state of a first step (no
    history); acting with history uses `observe_step`.
    """
    return self.representation(self.encoder(observation)).mode()

  def call(self, observation):
    return self.encode(observation)

  def initial_state(self, batch_size) -> tf.Tensor:
    """The acting state before the first observation: [N, D]."""
    return self.representation.initial_state(batch_size)

  def observe_step(self, prev_state: tf.Tensor, prev_action: tf.Tensor,
                   observation: tf.Tensor, is_first: tf.Tensor) -> tf.Tensor:
    """The latent state [N, D] (the mode) after observing o_t.

    Args:
      prev_state: [N, D], the state after o_{t-1} (or `initial_state`).
      prev_action: [N, A], a_{t-1}.
      observation: o_t, {key: [N, *shape]}.
      is_first: [N], 1 where o_t starts an episode (resets the state).
    Stateless representations ignore prev_state and prev_action.
    """
    return self.representation.observe_step(
        prev_state, prev_action, self.encoder(observation), is_first)[0]

  def latent_states(self, batch: Dict[str, tf.Tensor]) -> tf.Tensor:
    """Latent states [B, T, D] (modes) of a [B, T] sequence batch.

    Unlike `encode(batch)` this sees the sequence: a
    recurrent representation carries its state along it (resetting at
    is_first); for the others the two are the same.
    """
    features = self.encoder(batch)
    return self.representation.observe_sequence(
        features, batch['action'], tf.cast(batch['is_first'], tf.float32),
        seed=None)[0]

  def next_seed(self) -> tf.Tensor:
    """int32 [2]: [seed, number of earlier calls]; advances the counter.

    Under a strategy with several replicas, each replica's seed is this one
    folded with its replica id (`wm_tf.replicas.per_replica_seed`).
    """
    seed = tf.stack([tf.constant(self.seed, tf.int32),
                     tf.cast(tf.convert_to_tensor(self.loss_calls), tf.int32)])
    self.loss_calls.assign_add(1)
    return replicas.per_replica_seed(seed)

  def loss_terms(self, batch: Dict[str, tf.Tensor],
                 seed: Optional[tf.Tensor] = None
                 ) -> Tuple[Dict[str, tf.Tensor], tf.Tensor,
                            Dict[str, tf.Tensor]]:
    """The named terms of the negative log-likelihood of a batch.

    Args:
      batch: the observation keys {key: [B, T, *shape]}, 'action'
        [B, T, A], 'reward' [B, T], 'is_first' [B, T], 'is_terminal'
        [B, T] (floats or bools).
      seed: int32 [2] stateless seed of the representation's samples and
        the dynamics' bootstrap; None draws `next_seed()`.

    Returns:
      (terms {'dynamics', 'reward', 'continue', 'decoder',
       'representation'}: scalars, latent states [B, T, D],
       metrics {name: scalar}).
    """
    if seed is None:
      seed = self.next_seed()
    representation_seed, dynamics_seed = tf.unstack(
        tfp.random.split_seed(seed, n=2))
    action, reward = batch['action'], batch['reward']
    is_first = tf.cast(batch['is_first'], tf.float32)
    cont = 1.0 - tf.cast(batch['is_terminal'], tf.float32)
    features = self.encoder(batch)
    latent, representation_loss, representation_metrics = (
        self.representation.observe_sequence(
            features, action, is_first, seed=representation_seed))

    target = latent[:, 1:]
    if self.stop_gradient_target:
      target = tf.stop_gradient(target)
    real_transition = 1.0 - is_first[:, 1:]
    dynamics_loss, dynamics_metrics = self.dynamics.transition_loss(
        latent[:, :-1], action[:, :-1], target, real_transition,
        seed=dynamics_seed)

    not_first = 1.0 - is_first
    reward_nll = masked_mean(-self.reward(latent).log_prob(reward), not_first)
    continue_nll = self.continue_nll(latent, cont)
    decoder_nlls = self.decoder_nlls(latent, batch)
    decoder_nll = tf.add_n(list(decoder_nlls.values()))
    terms = {'dynamics': dynamics_loss, 'reward': reward_nll,
             'continue': continue_nll, 'decoder': decoder_nll,
             'representation': representation_loss}
    metrics = {
        'world_model/dynamics_loss': dynamics_loss,
        'world_model/reward_nll': reward_nll,
        'world_model/continue_nll': continue_nll,
        'world_model/decoder_nll': decoder_nll,
        'world_model/representation_loss': representation_loss,
        'world_model/latent_abs_mean': tf.reduce_mean(tf.abs(latent)),
    }
    for key, value in decoder_nlls.items():
      metrics[f'world_model/decoder_nll/{key}'] = value
    for name, value in list(dynamics_metrics.items()) + list(
        representation_metrics.items()):
      metrics[f'world_model/{name}'] = value
    return terms, latent, metrics

  def decoder_nlls(self, latent: tf.Tensor, batch: Dict[str, tf.Tensor]
                   ) -> Dict[str, tf.Tensor]:
    """{decoded key: mean NLL over [B, T] of its reconstruction}."""
    targets = self.decoder.targets(batch)
    return {key: tf.reduce_mean(-dist.log_prob(targets[key]))
            for key, dist in self.decoder(latent).items()}

  def world_model_loss(self, batch: Dict[str, tf.Tensor],
                       seed: Optional[tf.Tensor] = None
                       ) -> Tuple[tf.Tensor, tf.Tensor, Dict[str, tf.Tensor]]:
    """The scaled sum of `loss_terms`: (loss, latent [B, T, D], metrics).

    loss = sum_k loss_scales[k] * terms[k] over LOSS_TERMS, plus the
    representation's own loss (weighted inside the representation learner).
    """
    terms, latent, metrics = self.loss_terms(batch, seed)
    total = losses.weighted_total(
        terms, dict(self.loss_scales, representation=1.0))
    metrics['world_model/loss'] = total
    return total, latent, metrics
