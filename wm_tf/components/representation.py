"""Representation learners: encoder features -> latent state distribution.

Every learner is a Keras model (a `RepresentationLearner`) with
  call(features [..., F]) -> distribution over latent states [..., D];
  auxiliary_loss(features [B, T, F], latent, is_first=None, seed=None)
    -> (scalar loss, {name: scalar metric}), the terms it adds to the
    world-model loss (zero for the plain MLP); `latent` is what `call`
    returned for `features`, `is_first` [B, T] marks episode starts;
  observe_sequence(features [B, T, F], action [B, T, A], is_first [B, T],
    seed) -> (latent [B, T, D], loss, metrics), how the world model turns a
    replayed sequence into training latents (default: `call` per step, the
    reparameterised sample for stochastic learners, plus auxiliary_loss;
    with seed None the latents are modes);
  initial_state(batch) -> [N, D] and
  observe_step(prev_state [N, D], prev_action [N, A], features [N, F],
    is_first [N], seed=None) -> (state [N, D], posterior, prior), the
    acting-time API (stateless learners ignore the previous state and
    return prior None);
  own_dynamics() -> a dynamics model, or None when the configured
    `dynamics.type` is to be used (the RSSM brings its prior);
and the attributes `latent_dim` (D) and `recurrent`.

Families, keyed by the YAML `representation_learner.type`:
  mlp             deterministic tanh bottleneck.
  none            the encoder's features are the latent (D = F).
  mlp_autoencoder bottleneck + reconstruction of the encoder features.
  vae             Normal posterior, reparameterised sample, beta * KL(q||N(0,1)).
  contrastive     bottleneck + temporal InfoNCE (z_t against z_{t+1}).
  vq              vector-quantised bottleneck with a learned codebook.
  rssm            recurrent state-space model (see wm_tf.components.rssm).

Layers compute in the learner's dtype policy (`dtype=`, e.g.
'mixed_bfloat16'); latents, distributions and losses are float32.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from wm_tf import distributions
from wm_tf.components.mlp import MLP
from wm_tf.components.rssm import RSSM
from wm_tf.losses import info_nce, kl_normal_to_standard
from wm_tf.registry import Registry

REPRESENTATIONS = Registry('representation_learner')

Metrics = Dict[str, tf.Tensor]


class RepresentationLearner(keras.Model):
  """Defaults of the representation API for learners without recurrence."""

  recurrent = False

  def auxiliary_loss(self, features, latent, is_first=None, seed=None
                     ) -> Tuple[tf.Tensor, Metrics]:
    del features, latent, is_first, seed
    return tf.constant(0.0), {}

  def training_latent(self, latent, seed: Optional[tf.Tensor]) -> tf.Tensor:
    """The latent the world model trains on: the mode, unless overridden.

    Stochastic learners sample it (reparameterised) when given a seed and
    return the mode without one.
    """
    del seed
    return latent.mode()

  def observe_sequence(self, features, action, is_first, seed=None
                       ) -> Tuple[tf.Tensor, tf.Tensor, Metrics]:
    del action
    latent_seed, loss_seed = _split(seed, 2)
    latent = self(features)
    loss, metrics = self.auxiliary_loss(features, latent, is_first=is_first,
                                        seed=loss_seed)
    return self.training_latent(latent, latent_seed), loss, metrics

  def initial_state(self, batch_size) -> tf.Tensor:
    return tf.zeros([batch_size, self.latent_dim])

  def observe_step(self, prev_state, prev_action, features, is_first,
                   seed=None):
    del prev_state, prev_action, is_first, seed
    posterior = self(features)
    return posterior.mode(), posterior, None

  def own_dynamics(self):
    return None


def _split(seed: Optional[tf.Tensor], n: int):
  if seed is None:
    return [None] * n
  return tfp.random.split_seed(seed, n=n)


@REPRESENTATIONS.register('mlp')
class MLPBottleneck(RepresentationLearner):
  """Deterministic MLP bottleneck: features -> tanh(Dense(latent_dim)).

  The tanh keeps the latent in [-1, 1], so the scale of the dynamics loss
  does not drift as the encoder learns.
  """

  def __init__(self, latent_dim: int = 64, units: int = 256, layers: int = 1,
               activation: str = 'silu', **kwargs):
    super().__init__(**kwargs)
    self.latent_dim = latent_dim
    self.mlp = MLP(units, layers, activation, name='mlp',
                   dtype=self.dtype_policy)
    self.out = keras.layers.Dense(latent_dim, activation='tanh', name='latent',
                                  dtype=self.dtype_policy)

  def call(self, features):
    return distributions.deterministic(
        tf.cast(self.out(self.mlp(features)), tf.float32))

  def get_config(self):
    return {**super().get_config(), 'latent_dim': self.latent_dim,
            **self.mlp.arguments()}


@REPRESENTATIONS.register('none')
class IdentityRepresentation(RepresentationLearner):
  """No learner: the latent state is the encoder's features (D = F)."""

  def __init__(self, feature_dim: int, **kwargs):
    super().__init__(**kwargs)
    self.latent_dim = feature_dim

  def call(self, features):
    # Keras casts the input to the compute dtype; the latent is float32.
    return distributions.deterministic(tf.cast(features, tf.float32))

  def get_config(self):
    return {**super().get_config(), 'feature_dim': self.latent_dim}


@REPRESENTATIONS.register('mlp_autoencoder')
class MLPAutoencoder(MLPBottleneck):
  """The MLP bottleneck plus its own decoder back to the encoder features.

  This is a separate reconstruction, not an alias of the world model's
  decoder head: the head reconstructs observations from the latent; this
  one reconstructs the encoder features [..., F] from the latent, so the
  bottleneck keeps what the encoder extracted even where no world-model
  head needs it. Its target is stop_gradient(features): the encoder is not
  asked to make itself easy to reconstruct (it could do so by collapsing).

  Loss: aux_scale * mean over [B, T, F] of (reconstruction - features)^2.
  """

  def __init__(self, latent_dim: int = 64, feature_dim: int = 256,
               units: int = 256, layers: int = 1, activation: str = 'silu',
               aux_scale: float = 1.0, **kwargs):
    super().__init__(latent_dim=latent_dim, units=units, layers=layers,
                     activation=activation, **kwargs)
    self.aux_scale = aux_scale
    self.reconstruction_mlp = MLP(units, layers, activation,
                                  name='reconstruction_mlp',
                                  dtype=self.dtype_policy)
    self.reconstruction = keras.layers.Dense(feature_dim,
                                             name='reconstruction',
                                             dtype=self.dtype_policy)

  def build(self, features_shape):
    # Only auxiliary_loss uses the reconstruction: build it alongside call's
    # layers so that Keras sees every weight of a called model.
    self.reconstruction_mlp.build((None, self.latent_dim))
    self.reconstruction.build(
        (None, self.reconstruction_mlp.output_dim(self.latent_dim)))
    super().build(features_shape)

  def reconstruct(self, latent: tf.Tensor) -> tf.Tensor:
    """Encoder features [..., F] from latents [..., D]."""
    return tf.cast(self.reconstruction(self.reconstruction_mlp(latent)),
                   tf.float32)

  def auxiliary_loss(self, features, latent, is_first=None, seed=None):
    del is_first, seed
    error = self.reconstruct(latent.mode()) - tf.stop_gradient(features)
    mse = tf.reduce_mean(tf.square(error))
    return self.aux_scale * mse, {'reconstruction_mse': mse}

  def get_config(self):
    return {**super().get_config(), 'feature_dim': self.reconstruction.units,
            'aux_scale': self.aux_scale}


# The VAE posterior's std floor keeps log std (in the KL) finite.
VAE_MIN_STD = 0.01


@REPRESENTATIONS.register('vae')
class VAERepresentation(RepresentationLearner):
  """Diagonal Normal posterior q(z | features), prior N(0, I).

  mean = Dense(mlp(features)), std = softplus(Dense(...)) + 0.01. The world
  model trains on the reparameterised sample (`training_latent`); acting
  uses the mode (the mean). Loss: beta * mean over [B, T] of
  KL(q || N(0, I)), summed over the latent dimensions.

  beta must fit the observations: the KL is summed over D latent
  dimensions, while the decoder is a unit-std Normal, so on observations
  of small variance a nat of latent information buys well under a nat of
  likelihood: with beta 1 the posterior can collapse onto the prior, so
  the default is 0.01 (`config.REPRESENTATION_BETA`; docs/design.md has
  the measurement).
  """

  def __init__(self, latent_dim: int = 64, units: int = 256, layers: int = 1,
               activation: str = 'silu', beta: float = 0.01, **kwargs):
    super().__init__(**kwargs)
    self.latent_dim = latent_dim
    self.beta = beta
    self.mlp = MLP(units, layers, activation, name='mlp',
                   dtype=self.dtype_policy)
    self.mean = keras.layers.Dense(latent_dim, name='mean',
                                   dtype=self.dtype_policy)
    self.std = keras.layers.Dense(latent_dim, name='std',
                                  dtype=self.dtype_policy)

  def call(self, features):
    hidden = self.mlp(features)
    std = tf.nn.softplus(tf.cast(self.std(hidden), tf.float32)) + VAE_MIN_STD
    return distributions.normal(tf.cast(self.mean(hidden), tf.float32), std)

  def training_latent(self, latent, seed):
    # Without a seed (callers that want states, not training samples): the
    # mode, like every other learner.
    return latent.mode() if seed is None else latent.sample(seed=seed)

  def auxiliary_loss(self, features, latent, is_first=None, seed=None):
    del features, is_first, seed
    kl = tf.reduce_mean(kl_normal_to_standard(latent.mean(), latent.stddev()))
    return self.beta * kl, {'vae_kl': kl,
                            'vae_std': tf.reduce_mean(latent.stddev())}

  def get_config(self):
    return {**super().get_config(), 'latent_dim': self.latent_dim,
            **self.mlp.arguments(), 'beta': self.beta}


@REPRESENTATIONS.register('contrastive')
class ContrastiveRepresentation(MLPBottleneck):
  """The MLP bottleneck plus a temporal InfoNCE loss.

  For every real transition t -> t+1 (is_first[t+1] = 0) the query
  q_t = query_head(z_t) must pick its own key k_{t+1} = key_head(z_{t+1})
  out of the keys of all real transitions in the batch (B * (T-1) rows),
  by cosine similarity / temperature (see `wm_tf.losses.info_nce`). The
  query head is an MLP (it has to model the transition), the key head is
  linear. Loss: aux_scale * InfoNCE.
  """

  def __init__(self, latent_dim: int = 64, units: int = 256, layers: int = 1,
               activation: str = 'silu', temperature: float = 0.1,
               projection_dim: int = 32, aux_scale: float = 1.0, **kwargs):
    super().__init__(latent_dim=latent_dim, units=units, layers=layers,
                     activation=activation, **kwargs)
    self.temperature = temperature
    self.aux_scale = aux_scale
    self.query_mlp = MLP(units, 1, activation, name='query_mlp',
                         dtype=self.dtype_policy)
    self.query = keras.layers.Dense(projection_dim, name='query',
                                    dtype=self.dtype_policy)
    self.key = keras.layers.Dense(projection_dim, name='key',
                                  dtype=self.dtype_policy)

  def build(self, features_shape):
    # Only auxiliary_loss uses the projections: build them with call's.
    self.query_mlp.build((None, self.latent_dim))
    self.query.build((None, self.query_mlp.output_dim(self.latent_dim)))
    self.key.build((None, self.latent_dim))
    super().build(features_shape)

  def projections(self, latent: tf.Tensor, is_first=None
                  ) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Flat (query [N, P], key [N, P], mask [N]), N = B * (T-1)."""
    query = tf.cast(self.query(self.query_mlp(latent[:, :-1])), tf.float32)
    key = tf.cast(self.key(latent[:, 1:]), tf.float32)
    if is_first is None:
      mask = tf.ones(tf.shape(latent)[:2] - [0, 1])
    else:
      mask = 1.0 - tf.cast(is_first[:, 1:], tf.float32)
    size = tf.shape(query)[-1]
    return (tf.reshape(query, [-1, size]), tf.reshape(key, [-1, size]),
            tf.reshape(mask, [-1]))

  def auxiliary_loss(self, features, latent, is_first=None, seed=None):
    del features, seed
    query, key, mask = self.projections(latent.mode(), is_first)
    loss = info_nce(query, key, mask, self.temperature)
    return self.aux_scale * loss, {'info_nce': loss}

  def get_config(self):
    return {**super().get_config(), 'temperature': self.temperature,
            'projection_dim': self.query.units, 'aux_scale': self.aux_scale}


@REPRESENTATIONS.register('vq')
class VQRepresentation(RepresentationLearner):
  """Vector-quantised bottleneck (VQ-VAE style), in G groups.

  z_e = tanh(Dense(mlp(features))) [..., D] is split into G groups of
  D / G entries; group g is replaced by the nearest (L2) row of its own
  codebook [K, D / G] (product quantisation: K^G states instead of K, so a
  continuous state is not squeezed into log2(K) bits). The latent, the
  concatenated codes [..., D], is passed on with a straight-through
  gradient: z_q = z_e + stop_gradient(code - z_e), so d f(z_q) / d z_e =
  d f / d z_q. Loss, means over [B, T, D]: (stop_gradient(z_e) - code)^2
  (moves the codes) + commitment * (z_e - stop_gradient(code))^2 (keeps
  the encoder near its codes). Metrics, averaged over the groups: the
  codebook perplexity (exp of the entropy of the batch's code
  frequencies) and the number of codes used in the batch.

  D must be a multiple of G: a rule of the config (representation_learner
  latent_dim and codebook_groups), checked there.
  """

  def __init__(self, latent_dim: int = 64, units: int = 256, layers: int = 1,
               activation: str = 'silu', codebook_size: int = 64,
               codebook_groups: int = 8, commitment: float = 0.25, **kwargs):
    super().__init__(**kwargs)
    self.latent_dim = latent_dim
    self.codebook_size = codebook_size
    self.codebook_groups = codebook_groups
    self.code_dim = latent_dim // codebook_groups
    self.commitment = commitment
    self.mlp = MLP(units, layers, activation, name='mlp',
                   dtype=self.dtype_policy)
    self.pre = keras.layers.Dense(latent_dim, activation='tanh',
                                  name='pre_quantization',
                                  dtype=self.dtype_policy)
    # Codes spread over the tanh range of z_e, so many are near some input.
    # Quantisation stays float32 under a bfloat16 policy (autocast=False):
    # bfloat16's 8-bit mantissa would blur the nearest-code distances. The
    # codebook's shape does not depend on the input, so it is made here and
    # nearest_code works before the first call.
    self.codebook = self.add_weight(
        shape=(codebook_groups, codebook_size, self.code_dim),
        name='codebook',
        initializer=keras.initializers.RandomUniform(-1.0, 1.0),
        autocast=False)

  def encode_continuous(self, features) -> tf.Tensor:
    """z_e [..., D] float32, before quantisation."""
    return tf.cast(self.pre(self.mlp(features)), tf.float32)

  def nearest_code(self, z_e) -> Tuple[tf.Tensor, tf.Tensor]:
    """(index [..., G] int32, code [..., D]): per group, the nearest row."""
    codebook = tf.convert_to_tensor(self.codebook)  # [G, K, C]
    grouped = tf.reshape(
        z_e, tf.concat([tf.shape(z_e)[:-1],
                        [self.codebook_groups, self.code_dim]], 0))
    distance = (tf.reduce_sum(tf.square(grouped), -1, keepdims=True)
                - 2.0 * tf.einsum('...gc,gkc->...gk', grouped, codebook)
                + tf.reduce_sum(tf.square(codebook), -1))  # [..., G, K]
    index = tf.argmin(distance, -1, output_type=tf.int32)
    one_hot = tf.one_hot(index, self.codebook_size, dtype=codebook.dtype)
    code = tf.einsum('...gk,gkc->...gc', one_hot, codebook)
    return index, tf.reshape(code, tf.shape(z_e))

  @staticmethod
  def straight_through(z_e, code) -> tf.Tensor:
    return z_e + tf.stop_gradient(code - z_e)

  def call(self, features):
    z_e = self.encode_continuous(features)
    _, code = self.nearest_code(z_e)
    return distributions.deterministic(self.straight_through(z_e, code))

  def auxiliary_loss(self, features, latent, is_first=None, seed=None):
    del latent, is_first, seed
    z_e = self.encode_continuous(features)
    index, code = self.nearest_code(z_e)
    codebook_loss = tf.reduce_mean(tf.square(tf.stop_gradient(z_e) - code))
    commitment_loss = tf.reduce_mean(tf.square(z_e - tf.stop_gradient(code)))
    usage = tf.reduce_mean(tf.reshape(
        tf.one_hot(index, self.codebook_size),
        [-1, self.codebook_groups, self.codebook_size]), 0)  # [G, K]
    entropy = -tf.reduce_sum(
        usage * tf.math.log(tf.maximum(usage, 1e-12)), -1)  # [G]
    metrics = {
        'vq_codebook_loss': codebook_loss,
        'vq_commitment_loss': commitment_loss,
        'vq_perplexity': tf.reduce_mean(tf.exp(entropy)),
        'vq_codes_used': tf.reduce_mean(
            tf.reduce_sum(tf.cast(usage > 0, tf.float32), -1)),
    }
    return codebook_loss + self.commitment * commitment_loss, metrics

  def get_config(self):
    return {**super().get_config(), 'latent_dim': self.latent_dim,
            **self.mlp.arguments(), 'codebook_size': self.codebook_size,
            'codebook_groups': self.codebook_groups,
            'commitment': self.commitment}


REPRESENTATIONS.register('rssm')(RSSM)
