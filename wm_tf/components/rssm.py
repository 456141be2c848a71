"""Recurrent state-space model (RSSM): a recurrent representation learner.

The latent state is s_t = concat(h_t, z_t) [..., H + Z]:
  h_t = GRU(h_{t-1}, MLP(concat(z_{t-1}, a_{t-1})))   deterministic path;
  prior     p(z_t | h_t)       = L(MLP(h_t));
  posterior q(z_t | h_t, e_t)  = L(MLP(concat(h_t, e_t))),
with e_t the encoder features of o_t and a_{t-1} the action taken at
o_{t-1} (the replay's step t-1 record), and L the configured latent
(`representation_learner.latent`, wm_tf.components.rssm_latents): a
diagonal Normal over Z entries ('gaussian'), or G one-hot categoricals of
K classes, Z = G * K ('categorical'). Where is_first_t is set the previous
state and action are reset to zeros before the step, so an episode never
sees its predecessor.

Training (`observe_sequence`) runs the posterior over a [B, T] sequence,
one step at a time (unrolled, or as a tf.while_loop: `unroll`), sampling
z_t (reparameterised, or straight-through for categoricals).
Its loss is the KL of posterior to prior, summed over z, split in two
terms that train different sides (KL balancing, as in DreamerV2): the
prior's term KL(sg(q(z_t)) || p(z_t)) trains the prior to predict the
posterior (and, through h_t, the GRU path and the earlier samples z_{t-1}
it reads); the posterior's term KL(q(z_t) || sg(p(z_t))) pulls the
posterior towards the prior, with "free bits" per step (no gradient below
free_nats). Both terms have the KL's value. Means over [B, T]:
  gaussian     beta * (kl_balance * KL(sg q || p)
                       + (1 - kl_balance) * max(free_nats, KL(q || sg p)));
  categorical  dyn_scale * max(free_nats, KL(sg q || p))
               + rep_scale * max(free_nats, KL(q || sg p))   (DreamerV3).
The prior is also the model's dynamics: imagination uses
`RSSMPriorDynamics`, one prior step s_t, a_t -> s_{t+1}, in place of the
configured `dynamics.type` (whose transition loss would only duplicate it).

Why the Gaussian prior's term has no free bits: the free bits are there so
that the posterior may keep some information for free; they must not stop
the prior from learning. With both sides behind one max(free_nats, KL), a
KL that settles just under the free nats leaves the prior almost no
gradient, and imagination then cannot tell good actions from bad
(docs/design.md has the measurement). The categorical latent follows
DreamerV3 instead, whose prior term is scaled up (dyn_scale 0.5 against
rep_scale 0.1) rather than left unclipped.

The layers (GRU included) compute in the model's dtype policy (`dtype=`,
e.g. 'mixed_bfloat16'); h, the latent's parameters and the states are cast
to float32 as they leave the layers.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from wm_tf.components.dynamics import DynamicsModel, prediction_metrics
from wm_tf.components.mlp import MLP
from wm_tf.components.rssm_latents import RSSM_LATENTS


class RSSM(keras.Model):
  """Recurrent state-space model; see the module docstring.

  Args:
    latent_dim: 'gaussian': Z, the size of z; 'categorical': G, the number
      of categoricals (z has Z = G * classes entries).
    deter_dim: H, size of the GRU state h. The state has D = H + Z entries
      (`self.latent_dim` is D, what the dynamics, heads and actor see).
    action_dim: A.
    units, layers, activation: the MLPs of the prior and posterior heads.
    latent: the kind of z, a key of `RSSM_LATENTS` ('gaussian',
      'categorical'; see wm_tf.components.rssm_latents).
    classes: 'categorical': K, classes per categorical.
    unimix: 'categorical': weight of the uniform mix in its probabilities.
    free_nats: per-step KL below which a term has no gradient ('gaussian':
      the posterior's term only; 'categorical': both terms).
    beta: 'gaussian': weight of the KL term (None for 'categorical').
    kl_balance: 'gaussian': share of the KL that trains the prior (0.8:
      DreamerV2's balance); the rest regularises the posterior. In [0, 1]:
      a rule of the config (representation_learner.kl_balance).
    dyn_scale, rep_scale: 'categorical': weights of the prior's (dynamics)
      and the posterior's (representation) KL terms.
    unroll: `observe_sequence` writes the T steps out one after another
      (XLA schedules across steps), or compiles one step as the body of a
      `tf.while_loop` (a program T times smaller: far less time to compile).

  API (N any batch size):
    initial_state(N) -> zeros [N, D];
    observe_step(prev_state [N, D], prev_action [N, A], features [N, F],
      is_first [N], seed=None) -> (state [N, D], posterior, prior), the
      state a posterior sample (seeded) or mode (seed None);
    prior_step(state [N, D], action [N, A]) -> distribution over [N, D];
    observe_sequence(features [B, T, F], action [B, T, A], is_first [B, T],
      seed) -> (states [B, T, D], loss, metrics);
    call(features [..., F]) -> the posterior state distribution of a first
      step (no history): what a stateless caller such as `encode` gets.
  """

  recurrent = True

  def __init__(self, latent_dim: int = 32, deter_dim: int = 64,
               action_dim: int = 1, units: int = 256, layers: int = 1,
               activation: str = 'silu', latent: str = 'gaussian',
               classes: int = 32, unimix: float = 0.01,
               free_nats: float = 1.0, beta: Optional[float] = 1.0,
               kl_balance: float = 0.8, dyn_scale: float = 0.5,
               rep_scale: float = 0.1, unroll: bool = True, **kwargs):
    super().__init__(**kwargs)
    self.latent = latent
    self.unroll = unroll
    self.stochastic_latent = RSSM_LATENTS.get(latent)(latent_dim, classes,
                                                      unimix)
    # Z Normal variables or G categoricals, as configured.
    self.stochastic_variables = latent_dim
    self.classes, self.unimix = classes, unimix
    self.stoch_dim = self.stochastic_latent.stoch_dim
    self.deter_dim = deter_dim
    self.action_dim = action_dim
    self.latent_dim = deter_dim + self.stoch_dim
    self.free_nats = free_nats
    self.beta = beta
    self.kl_balance = kl_balance
    self.dyn_scale = dyn_scale
    self.rep_scale = rep_scale
    policy = self.dtype_policy
    self.img_in = MLP(units, 1, activation, name='img_in', dtype=policy)
    self.gru = keras.layers.GRUCell(deter_dim, name='gru', dtype=policy)
    self.prior_mlp = MLP(units, layers, activation, name='prior_mlp',
                         dtype=policy)
    raw_dim = self.stochastic_latent.raw_dim
    self.prior_out = keras.layers.Dense(raw_dim, name='prior_out',
                                        dtype=policy)
    self.post_mlp = MLP(units, layers, activation, name='post_mlp',
                        dtype=policy)
    self.post_out = keras.layers.Dense(raw_dim, name='post_out',
                                       dtype=policy)

  def build(self, features_shape):
    # Training goes through observe_sequence, not call: build every layer
    # here so that a model first called after training sees them all.
    self.build_prior()
    posterior_inputs = self.deter_dim + features_shape[-1]
    _build_once(self.post_mlp, posterior_inputs)
    _build_once(self.post_out, self.post_mlp.output_dim(posterior_inputs))
    super().build(features_shape)

  def build_prior(self) -> None:
    """Creates the weights of `prior_step` (GRU path and prior head)."""
    _build_once(self.img_in, self.stoch_dim + self.action_dim)
    _build_once(self.gru, self.img_in.output_dim(
        self.stoch_dim + self.action_dim))
    _build_once(self.prior_mlp, self.deter_dim)
    _build_once(self.prior_out, self.prior_mlp.output_dim(self.deter_dim))

  def initial_state(self, batch_size) -> tf.Tensor:
    return tf.zeros([batch_size, self.latent_dim])

  def split_state(self, state) -> Tuple[tf.Tensor, tf.Tensor]:
    """(h [..., H], z [..., Z])."""
    return state[..., :self.deter_dim], state[..., self.deter_dim:]

  def prior_step(self, state, action):
    """p(s_{t+1} | s_t, a_t): the GRU step, then the prior over z."""
    deter, stoch = self.split_state(state)
    x = self.img_in(tf.concat([stoch, action], -1))
    # GRUCell wants rank-2 inputs: fold any leading axes into one.
    lead = tf.shape(x)[:-1]
    deter, _ = self.gru(tf.reshape(x, [-1, x.shape[-1]]),
                        [tf.reshape(deter, [-1, self.deter_dim])])
    deter = tf.reshape(tf.cast(deter, tf.float32),
                       tf.concat([lead, [self.deter_dim]], 0))
    return self.stochastic_latent.distribution(
        deter, self.prior_out(self.prior_mlp(deter)))

  def posterior(self, deter, features):
    """q(s_t | h_t, e_t) given h [..., H] and features [..., F]."""
    # `call` gets its features in the compute dtype (Keras casts inputs).
    features = tf.cast(features, deter.dtype)
    return self.stochastic_latent.distribution(
        deter, self.post_out(self.post_mlp(tf.concat([deter, features], -1))))

  def observe_step(self, prev_state, prev_action, features, is_first,
                   seed: Optional[tf.Tensor] = None):
    keep = 1.0 - tf.cast(is_first, tf.float32)[..., None]
    prior = self.prior_step(prev_state * keep, prev_action * keep)
    posterior = self.posterior(prior.deter, features)
    state = (posterior.mode() if seed is None
             else posterior.sample(seed=seed))
    return state, posterior, prior

  def call(self, features):
    lead = tf.shape(features)[:-1]
    state = tf.zeros(tf.concat([lead, [self.latent_dim]], 0))
    action = tf.zeros(tf.concat([lead, [self.action_dim]], 0))
    return self.observe_step(state, action, features,
                             tf.ones(lead, tf.float32))[1]

  def observe_sequence(self, features, action, is_first, seed=None
                       ) -> Tuple[tf.Tensor, tf.Tensor, Dict[str, tf.Tensor]]:
    """Posterior states [B, T, D] of a replayed sequence, and the KL loss.

    Step t uses action[:, t-1] (zeros at t = 0); every window starts from
    the initial state, whether or not its step 0 is an episode start.
    """
    length = features.shape[1]
    latent = self.stochastic_latent
    seeds = (None if seed is None
             else tf.stack(list(tfp.random.split_seed(seed, n=length))))

    def step(state, prev_action, t):
      """One posterior step: (state, [state, KLs and spreads of step t])."""
      state, posterior, prior = self.observe_step(
          state, prev_action, features[:, t], is_first[:, t],
          None if seeds is None else seeds[t])
      prior_kl, posterior_kl = latent.kl_terms(posterior, prior)
      return state, (state, prior_kl, posterior_kl,
                     latent.spread(posterior), latent.spread(prior))

    state = self.initial_state(tf.shape(features)[0])
    prev_action = tf.zeros_like(action[:, 0])
    if self.unroll:
      outputs = []
      for t in range(length):
        state, out = step(state, prev_action, t)
        outputs.append(out)
        prev_action = action[:, t]
      # Each [B, T, ...] for the batch-shaped outputs, [T] for the spreads.
      states, prior_kl, posterior_kl, post_spread, prior_spread = [
          tf.stack(parts, 1 if parts[0].shape.rank else 0)
          for parts in zip(*outputs)]
    else:
      states, prior_kl, posterior_kl, post_spread, prior_spread = (
          self._observe_loop(step, state, prev_action, action, length))
    # prior_kl [B, T] is the KL with its gradient to p only; posterior_kl
    # the same value, to q only.
    loss, metrics = latent.kl_loss(self, prior_kl, posterior_kl)
    spread = latent.spread_name
    metrics = {
        'rssm_kl': tf.reduce_mean(prior_kl), **metrics,
        f'rssm_posterior_{spread}': tf.reduce_mean(post_spread),
        f'rssm_prior_{spread}': tf.reduce_mean(prior_spread),
    }
    return states, loss, metrics

  @staticmethod
  def _observe_loop(step, state, prev_action, action, length):
    """`step` over t = 0..T-1 as one tf.while_loop body.

    Returns the five outputs of `step` stacked over time: batch-shaped ones
    as [B, T, ...], the scalar spreads as [T].
    """
    # Every output is float32 (the layers' outputs are cast as they leave).
    arrays = tuple(tf.TensorArray(tf.float32, size=length) for _ in range(5))

    def body(t, state, prev_action, arrays):
      state, out = step(state, prev_action, t)
      arrays = tuple(a.write(t, x) for a, x in zip(arrays, out))
      return t + 1, state, tf.gather(action, t, axis=1), arrays

    _, _, _, arrays = tf.while_loop(
        lambda t, *_: t < length, body,
        (tf.constant(0), state, prev_action, arrays),
        maximum_iterations=length)
    stacked = [a.stack() for a in arrays]  # [T, B, ...] or [T]
    return [tf.transpose(x, [1, 0] + list(range(2, x.shape.rank)))
            if x.shape.rank > 1 else x for x in stacked]

  def own_dynamics(self) -> 'RSSMPriorDynamics':
    return RSSMPriorDynamics(self, name='dynamics')

  def get_config(self):
    return {**super().get_config(), 'latent_dim': self.stochastic_variables,
            'deter_dim': self.deter_dim, 'action_dim': self.action_dim,
            **self.prior_mlp.arguments(), 'latent': self.latent,
            'classes': self.classes, 'unimix': self.unimix,
            'free_nats': self.free_nats, 'beta': self.beta,
            'kl_balance': self.kl_balance, 'dyn_scale': self.dyn_scale,
            'rep_scale': self.rep_scale, 'unroll': self.unroll}


def _build_once(layer: keras.layers.Layer, input_dim: int) -> None:
  """Builds `layer` for inputs [N, input_dim] unless it is built already."""
  if not layer.built:
    layer.build((None, input_dim))


class RSSMPriorDynamics(DynamicsModel):
  """The RSSM's prior step as a dynamics model: (s_t, a_t) -> p(s_{t+1}).

  It shares the RSSM's weights. Its `transition_loss` adds 0: the prior is
  trained by the RSSM's KL term (in the representation loss), and a second
  likelihood of the posterior sample would only duplicate it. It still
  reports the diagnostics (MSE of the prior mean against the posterior
  state, whose h block the prior reproduces exactly).
  """

  def __init__(self, rssm: RSSM, **kwargs):
    super().__init__(**kwargs)
    self.rssm = rssm
    self.latent_dim = rssm.latent_dim

  def build(self, state_shape):
    self.rssm.build_prior()
    super().build(state_shape)

  def call(self, state, action):
    return self.rssm.prior_step(state, action)

  def transition_loss(self, state, action, target, mask, seed=None):
    del seed
    metrics = prediction_metrics(self(state, action), target, mask)
    return tf.constant(0.0), metrics
