"""The stochastic part z of the RSSM's state, one class per kind of latent.

Keyed by the YAML `representation_learner.latent`:
  gaussian     z [..., Z] ~ diagonal Normal(mean, softplus(.) + 0.1).
  categorical  z [..., G * K]: G one-hot categoricals of K classes each
               (DreamerV2/V3), their probabilities mixed with 1% uniform
               (`unimix`), sampled straight-through.

A latent knows the size of z, turns the output of the prior or posterior
layer (`raw_dim` units) into the state distribution over concat(h, z),
gives the two stop-gradient sides of KL(q || p) per step and weighs them
into the RSSM's KL loss. It owns no weights: the RSSM's layers are sized
by it. The weights of the KL come from the RSSM (`kl_loss(rssm, ...)`
reads its free_nats, beta, kl_balance, dyn_scale and rep_scale): each
latent reads its own, and the config refuses the others.
"""

from __future__ import annotations

from typing import Dict, Tuple

import tensorflow as tf
import tensorflow_probability as tfp

from wm_tf import distributions
from wm_tf.losses import kl_categorical
from wm_tf.registry import Registry

tfd = tfp.distributions

RSSM_LATENTS = Registry('representation_learner.latent')

# Std floor of prior and posterior: keeps the KL finite and the latent from
# turning into a point mass that the prior can never match.
RSSM_MIN_STD = 0.1


class RecurrentStateDistribution(tfd.Independent):
  """Point mass on h [..., H] joined with a diagonal Normal on z [..., Z].

  Event shape [H + Z]: samples are concat(h, z ~ Normal) (reparameterised),
  mean and mode concat(h, loc), stddev concat(0, scale). `log_prob(x)` is
  the log density of x's z block alone: h is a deterministic function of
  the previous state and action, a point mass whose mass we count as 1.
  """

  def __init__(self, deter, loc, scale, name='RecurrentStateDistribution'):
    parameters = dict(locals())
    self._deter = tf.convert_to_tensor(deter, tf.float32)
    self._stochastic = distributions.normal(loc, scale)
    super().__init__(
        distributions.Normal(tf.concat([self._deter, loc], -1),
                   tf.concat([tf.zeros_like(self._deter), scale], -1)),
        reinterpreted_batch_ndims=1, name=name)
    self._parameters = parameters

  @classmethod
  def _parameter_properties(cls, dtype, num_classes=None):
    return dict(deter=tfp.util.ParameterProperties(event_ndims=1),
                loc=tfp.util.ParameterProperties(event_ndims=1),
                scale=tfp.util.ParameterProperties(event_ndims=1))

  @property
  def deter(self) -> tf.Tensor:
    """h [..., H]."""
    return self._deter

  @property
  def stochastic(self) -> tfd.Distribution:
    """The Normal over z [..., Z]."""
    return self._stochastic

  def _log_prob(self, x):
    return self._stochastic.log_prob(x[..., self._deter.shape[-1]:])


def _stopped(normal: tfd.Distribution) -> tfd.Distribution:
  """The same Normal with its parameters' gradients stopped."""
  return distributions.normal(tf.stop_gradient(normal.mean()),
                              tf.stop_gradient(normal.stddev()))


@RSSM_LATENTS.register('gaussian')
class GaussianLatent:
  """z [..., Z] ~ Normal; KL loss with balancing and free bits on one side.

  kl_loss = beta * (kl_balance * mean KL(sg q || p)
                    + (1 - kl_balance) * mean max(free_nats, KL(q || sg p))),
  means over [B, T], KLs summed over Z. The prior's term has no free bits
  (see wm_tf.components.rssm for why).

  Args:
    latent_dim: Z. (`classes` and `unimix` are the categorical latent's.)
  """

  spread_name = 'std'

  def __init__(self, latent_dim: int, classes: int, unimix: float):
    del classes, unimix
    self.stoch_dim = latent_dim
    self.raw_dim = 2 * latent_dim

  def distribution(self, deter, raw) -> RecurrentStateDistribution:
    """The state distribution from h [..., H] and raw [..., 2Z]."""
    mean, std = tf.split(tf.cast(raw, tf.float32), 2, -1)
    return RecurrentStateDistribution(deter, mean,
                                      tf.nn.softplus(std) + RSSM_MIN_STD)

  def kl_terms(self, posterior, prior) -> Tuple[tf.Tensor, tf.Tensor]:
    """(KL(sg q || p), KL(q || sg p)), both [N]: one value, two gradients."""
    q, p = posterior.stochastic, prior.stochastic
    return (tfd.kl_divergence(_stopped(q), p),
            tfd.kl_divergence(q, _stopped(p)))

  def spread(self, state_distribution) -> tf.Tensor:
    """Mean std of z: the `rssm_{posterior,prior}_std` metrics."""
    return tf.reduce_mean(state_distribution.stochastic.stddev())

  def kl_loss(self, rssm, prior_kl, posterior_kl
              ) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
    """(the weighted loss, metrics) from the [B, T] KLs of `kl_terms`."""
    kl_loss = (
        rssm.kl_balance * tf.reduce_mean(prior_kl)
        + (1.0 - rssm.kl_balance)
        * tf.reduce_mean(tf.maximum(posterior_kl, rssm.free_nats)))
    return rssm.beta * kl_loss, {'rssm_kl_loss': kl_loss}


class CategoricalStateDistribution:
  """Point mass on h [..., H] joined with G categoricals on z [..., G * K].

  logits [..., G, K] are those of the (unimix-mixed) class probabilities.
  A state is concat(h, z) with z the G one-hot vectors flattened:
    sample(seed): z one-hot draws, straight-through (gradient of the probs);
    mode(): z = one_hot(argmax), no gradient;
    mean(): z = the probabilities; stddev(): concat(0, sqrt(p (1 - p)));
    log_prob(x): sum over groups of log p at x's classes (h not counted);
    entropy(): [..., G] per group.
  """

  def __init__(self, deter, logits):
    self.deter = tf.convert_to_tensor(deter, tf.float32)
    self.logits = tf.convert_to_tensor(logits, tf.float32)
    self.probs = tf.nn.softmax(self.logits, -1)

  @property
  def batch_shape(self) -> tf.TensorShape:
    return self.deter.shape[:-1]

  @property
  def event_shape(self) -> tf.TensorShape:
    return tf.TensorShape(
        [self.deter.shape[-1] + self.logits.shape[-2] * self.logits.shape[-1]])

  def _state(self, z) -> tf.Tensor:
    """concat(h, z [..., G, K] flattened) [..., H + G * K]."""
    return tf.concat([self.deter, _flatten_groups(z)], -1)

  def sample(self, seed) -> tf.Tensor:
    return self._state(distributions.straight_through_one_hot(
        self.logits, tfp.random.sanitize_seed(seed)))

  def mode(self) -> tf.Tensor:
    return self._state(tf.one_hot(tf.argmax(self.logits, -1),
                                  self.logits.shape[-1]))

  def mean(self) -> tf.Tensor:
    return self._state(self.probs)

  def stddev(self) -> tf.Tensor:
    return tf.concat([tf.zeros_like(self.deter), _flatten_groups(
        tf.sqrt(self.probs * (1.0 - self.probs)))], -1)

  def log_prob(self, x) -> tf.Tensor:
    z = tf.reshape(x[..., self.deter.shape[-1]:], tf.shape(self.logits))
    return tf.reduce_sum(z * tf.nn.log_softmax(self.logits, -1), [-2, -1])

  def entropy(self) -> tf.Tensor:
    return -tf.reduce_sum(self.probs * tf.nn.log_softmax(self.logits, -1), -1)


def _flatten_groups(z: tf.Tensor) -> tf.Tensor:
  """[..., G, K] -> [..., G * K], the static shape kept."""
  return tf.reshape(z, tf.concat([tf.shape(z)[:-2],
                                  [z.shape[-2] * z.shape[-1]]], 0))


@RSSM_LATENTS.register('categorical')
class CategoricalLatent:
  """z: G one-hot categoricals of K classes, 1% uniform mix, KL balancing.

  The prior's and posterior's class probabilities are
  (1 - unimix) softmax(raw) + unimix / K. With the per-step KLs summed over
  the groups (DreamerV3's scales and free bits):
    kl_loss = dyn_scale * mean max(free_nats, KL(sg q || p))
              + rep_scale * mean max(free_nats, KL(q || sg p)),
  means over [B, T]: the dynamics term trains the prior, the representation
  term pulls the posterior towards it, neither below free_nats.

  Args:
    latent_dim: G, the number of categoricals (DreamerV3's `stoch`).
    classes: K.
    unimix: the weight of the uniform mix, in [0, 1).
  """

  spread_name = 'entropy'

  def __init__(self, latent_dim: int, classes: int, unimix: float):
    self.groups = latent_dim
    self.classes = classes
    self.unimix = unimix
    self.stoch_dim = latent_dim * classes
    self.raw_dim = latent_dim * classes

  def distribution(self, deter, raw) -> CategoricalStateDistribution:
    """The state distribution from h [..., H] and raw [..., G * K]."""
    raw = tf.cast(raw, tf.float32)
    logits = tf.reshape(raw, tf.concat(
        [tf.shape(raw)[:-1], [self.groups, self.classes]], 0))
    return CategoricalStateDistribution(
        deter, distributions.unimix_logits(logits, self.unimix))

  def kl_terms(self, posterior, prior) -> Tuple[tf.Tensor, tf.Tensor]:
    """(KL(sg q || p), KL(q || sg p)), both [N], summed over the groups."""
    q, p = posterior.logits, prior.logits
    return (tf.reduce_sum(kl_categorical(tf.stop_gradient(q), p), -1),
            tf.reduce_sum(kl_categorical(q, tf.stop_gradient(p)), -1))

  def spread(self, state_distribution) -> tf.Tensor:
    """Mean entropy per group: `rssm_{posterior,prior}_entropy`."""
    return tf.reduce_mean(state_distribution.entropy())

  def kl_loss(self, rssm, prior_kl, posterior_kl
              ) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
    """(the weighted loss, metrics) from the [B, T] KLs of `kl_terms`."""
    dyn = tf.reduce_mean(tf.maximum(prior_kl, rssm.free_nats))
    rep = tf.reduce_mean(tf.maximum(posterior_kl, rssm.free_nats))
    loss = rssm.dyn_scale * dyn + rssm.rep_scale * rep
    return loss, {'rssm_kl_loss': loss, 'rssm_dyn_loss': dyn,
                  'rssm_rep_loss': rep}
