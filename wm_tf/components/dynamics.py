"""Dynamics models: p(s_{t+1} | s_t, a_t) over latent states.

A dynamics model is a Keras model with
  call(state [..., D], action [..., A]) -> distribution over [..., D],
whose result has `mean()`, `stddev()` and a reparameterised
`sample(seed=...)` (imagination uses the mean or a sample; uncertainty-aware
acting reads the stddev), and
  transition_loss(state, action, target, mask, seed) -> (loss, metrics),
the term it adds to the world-model loss. `DynamicsModel` provides the
default, the masked negative log-likelihood of the target; models trained
otherwise (MSE, bootstrapped members) override it.

Families, keyed by the YAML `dynamics.type`:
  gaussian       one diagonal Normal, std fixed or learned.
  deterministic  a point estimate trained with MSE.
  ensemble       N Gaussian members, each on its own bootstrap of the batch.
  mixture        K Gaussians mixed by predicted weights.

The layers compute in the model's dtype policy (`dtype=`, e.g.
'mixed_bfloat16'); the distribution parameters are cast to float32.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from wm_tf import distributions
from wm_tf.components.mlp import MLP
from wm_tf.losses import masked_mean
from wm_tf.registry import Registry

tfd = tfp.distributions

DYNAMICS = Registry('dynamics')

# Poisson(1) CDF at k = 0..11: P(count <= k). Counts above 11 have
# probability < 1e-9 and are cut to 12.
_POISSON_ONE_CDF = (
    0.36787944117144233, 0.7357588823428847, 0.9196986029286058,
    0.9810118431238462, 0.9963401531726563, 0.9994058151824183,
    0.9999167588507119, 0.9999897508033253, 0.9999988747974020,
    0.9999998885745217, 0.9999999899522336, 0.9999999991683892)


def prediction_metrics(prediction, target: tf.Tensor, mask: tf.Tensor
                       ) -> Dict[str, tf.Tensor]:
  """Diagnostics every dynamics model reports.

  Args:
    prediction: distribution over [B, T', D].
    target: [B, T', D].
    mask: [B, T'], 1 for real transitions.

  Returns:
    'dynamics_mse': masked mean over transitions of the mean-over-D squared
      error of the predicted mean; 'dynamics_std': masked mean of the
      mean-over-D predicted stddev.
  """
  mse = masked_mean(
      tf.reduce_mean(tf.square(prediction.mean() - target), -1), mask)
  std = masked_mean(tf.reduce_mean(prediction.stddev(), -1), mask)
  return {'dynamics_mse': mse, 'dynamics_std': std}


class DynamicsModel(keras.Model):
  """Base class: the default transition loss is the masked NLL."""

  def transition_loss(self, state: tf.Tensor, action: tf.Tensor,
                      target: tf.Tensor, mask: tf.Tensor,
                      seed: Optional[tf.Tensor] = None
                      ) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
    """The dynamics term of the world-model loss.

    Args:
      state: s_t [B, T', D] (T' = T - 1 transitions of a [B, T] sequence).
      action: a_t [B, T', A].
      target: s_{t+1} [B, T', D].
      mask: [B, T'], 1 where the transition t -> t+1 is real.
      seed: int32 [2] stateless seed (unused by the default).

    Returns:
      (scalar loss, {metric name: scalar}); the default loss is the masked
      mean of -log p(target), also reported as 'dynamics_nll'.
    """
    del seed
    prediction = self(state, action)
    nll = masked_mean(-prediction.log_prob(target), mask)
    metrics = {'dynamics_nll': nll}
    metrics.update(prediction_metrics(prediction, target, mask))
    return nll, metrics


def _scale(hidden_std, std_mode, fixed_std, min_std, max_std, like):
  """The Normal scale: fixed, or a sigmoid squashed into [min_std, max_std].

  The +2 shift starts a learned std near max_std, so early predictions are
  not over-confident.
  """
  if std_mode == 'fixed':
    return tf.fill(tf.shape(like), tf.cast(fixed_std, like.dtype))
  return min_std + (max_std - min_std) * tf.sigmoid(hidden_std + 2.0)


def _gaussian_arguments(model) -> dict:
  """The arguments `_build_gaussian_layers` was given, as constructor ones."""
  return dict(latent_dim=model.latent_dim, std=model.std_mode,
              fixed_std=model.fixed_std, min_std=model.min_std,
              max_std=model.max_std, **model.mlp.arguments())


def _check_std_mode(std: str) -> None:
  if std not in ('learned', 'fixed'):
    raise ValueError(f"std must be 'learned' or 'fixed', got {std!r}.")


def _build_gaussian_layers(model, latent_dim: int, outputs: int, std: str,
                           fixed_std: float, min_std: float, max_std: float,
                           units: int, layers: int, activation: str) -> None:
  """Gives a Gaussian dynamics model its settings and layers.

  model.mlp: (state, action) features; model.mean and (std='learned')
  model.std: Dense(outputs), `outputs` = latent_dim per Gaussian.
  """
  _check_std_mode(std)
  model.latent_dim = latent_dim
  model.std_mode = std
  model.fixed_std = fixed_std
  model.min_std = min_std
  model.max_std = max_std
  model.mlp = MLP(units, layers, activation, name='mlp',
                  dtype=model.dtype_policy)
  model.mean = keras.layers.Dense(outputs, name='mean',
                                  dtype=model.dtype_policy)
  if std == 'learned':
    model.std = keras.layers.Dense(outputs, name='std',
                                   dtype=model.dtype_policy)


@DYNAMICS.register('gaussian')
class GaussianDynamics(DynamicsModel):
  """Diagonal Normal over the next latent state.

  std='fixed' uses `fixed_std` everywhere (the design's 1e-4: the NLL is
  then an MSE scaled by 1 / (2 * 1e-8)); std='learned' predicts it, squashed
  into [min_std, max_std] by a sigmoid so the NLL stays bounded below.
  """

  def __init__(self, latent_dim: int, std: str = 'learned',
               fixed_std: float = 1e-4, min_std: float = 0.01,
               max_std: float = 1.0, units: int = 256, layers: int = 2,
               activation: str = 'silu', **kwargs):
    super().__init__(**kwargs)
    _build_gaussian_layers(self, latent_dim, latent_dim, std, fixed_std,
                           min_std, max_std, units, layers, activation)

  def mean_and_scale(self, state, action) -> Tuple[tf.Tensor, tf.Tensor]:
    """The Normal's parameters, each [..., D], float32."""
    hidden = self.mlp(tf.concat([state, action], -1))
    mean = tf.cast(self.mean(hidden), tf.float32)
    raw_std = (tf.cast(self.std(hidden), tf.float32)
               if self.std_mode == 'learned' else None)
    return mean, _scale(raw_std, self.std_mode, self.fixed_std, self.min_std,
                        self.max_std, mean)

  def call(self, state, action):
    return distributions.normal(*self.mean_and_scale(state, action))

  def get_config(self):
    return {**super().get_config(), **_gaussian_arguments(self)}


@DYNAMICS.register('deterministic')
class DeterministicDynamics(DynamicsModel):
  """A point estimate of the next latent state, trained with MSE.

  `call` returns a point mass (tfd.Deterministic, event rank 1): its mean,
  mode and samples are the prediction and its stddev() is 0 everywhere (a
  point estimate claims no uncertainty, so uncertainty-aware acting sees
  none). A point mass has no usable log-density, so `transition_loss` is
  the masked mean squared error instead of an NLL: the mean over the latent
  dimensions of (prediction - target)^2, averaged over real transitions
  (equal to the 'dynamics_mse' metric).
  """

  def __init__(self, latent_dim: int, units: int = 256, layers: int = 2,
               activation: str = 'silu', **kwargs):
    super().__init__(**kwargs)
    self.latent_dim = latent_dim
    self.mlp = MLP(units, layers, activation, name='mlp',
                   dtype=self.dtype_policy)
    self.mean = keras.layers.Dense(latent_dim, name='mean',
                                   dtype=self.dtype_policy)

  def call(self, state, action):
    return distributions.deterministic(tf.cast(
        self.mean(self.mlp(tf.concat([state, action], -1))), tf.float32))

  def get_config(self):
    return {**super().get_config(), 'latent_dim': self.latent_dim,
            **self.mlp.arguments()}

  def transition_loss(self, state, action, target, mask, seed=None):
    del seed
    prediction = self(state, action)
    metrics = prediction_metrics(prediction, target, mask)
    return metrics['dynamics_mse'], metrics


class EnsembleNormal(tfd.MixtureSameFamily):
  """The prediction of an ensemble of diagonal Normal members.

  As a distribution it is the uniform mixture of the members, which gives
  `log_prob` (log of the average member density) and `mean()` (the member
  mean). Two things differ from the plain mixture:

  * `stddev()` = disagreement + (mean member std if `aleatoric`), where the
    disagreement is the (population) std across the member means, [..., D].
    With a fixed member std the stddev is the disagreement alone. The sum
    bounds the mixture's own sqrt(disagreement^2 + E[std^2]) from above.
  * `sample()` with sample_member=True picks one member uniformly per batch
    entry and samples it (reparameterised within the member); with
    sample_member=False it samples Normal(member mean, mean member std).

  Args:
    loc, scale: the members' means and stds [..., K, D].
    aleatoric: whether the member stds are learned (add them to stddev).
    sample_member: how `sample` imagines (see above).
  """

  def __init__(self, loc, scale, aleatoric: bool = True,
               sample_member: bool = True, name: str = 'EnsembleNormal'):
    parameters = dict(locals())
    self._loc = tf.convert_to_tensor(loc, tf.float32)
    self._scale = tf.convert_to_tensor(scale, tf.float32)
    self._aleatoric = aleatoric
    self._sample_member = sample_member
    super().__init__(
        mixture_distribution=tfd.Categorical(
            logits=tf.zeros_like(self._loc[..., 0])),
        components_distribution=distributions.normal(self._loc, self._scale),
        name=name)
    self._parameters = parameters

  @classmethod
  def _parameter_properties(cls, dtype, num_classes=None):
    return dict(loc=tfp.util.ParameterProperties(event_ndims=2),
                scale=tfp.util.ParameterProperties(event_ndims=2))

  def member_means(self) -> tf.Tensor:
    """[..., K, D]."""
    return self._loc

  def member_stddevs(self) -> tf.Tensor:
    """[..., K, D]."""
    return self._scale

  def disagreement(self) -> tf.Tensor:
    """Std across the member means (population, ddof=0): [..., D]."""
    return tf.math.reduce_std(self._loc, axis=-2)

  def _mean(self):
    return tf.reduce_mean(self._loc, -2)

  def _stddev(self):
    std = self.disagreement()
    if self._aleatoric:
      std = std + tf.reduce_mean(self._scale, -2)
    return std

  def _variance(self):
    return tf.square(self._stddev())

  def _sample_n(self, n, seed=None):
    if self._sample_member:
      return super()._sample_n(n, seed=seed)
    mean = tf.reduce_mean(self._loc, -2)
    noise = distributions.standard_normal(
        tf.concat([[n], tf.shape(mean)], 0),
        tfp.random.sanitize_seed(seed), dtype=mean.dtype)
    return mean + tf.reduce_mean(self._scale, -2) * noise


def poisson_bootstrap_weights(shape, members: int, seed: tf.Tensor
                              ) -> tf.Tensor:
  """Independent Poisson(1) counts [members, *shape], float32.

  A Poisson(1) count per sample and member is the bootstrap of a stream of
  unknown length (each sample is drawn ~ Poisson(1) times, as in resampling
  n of n with replacement for large n). Inverse-CDF sampling from one
  stateless uniform keeps it XLA-friendly.
  """
  uniform = distributions.uniform(tf.concat([[members], shape], 0), seed)
  count = tf.zeros_like(uniform)
  for cdf in _POISSON_ONE_CDF:
    count += tf.cast(uniform > cdf, tf.float32)
  return count


@DYNAMICS.register('ensemble')
class EnsembleDynamics(DynamicsModel):
  """N Gaussian members, each trained on its own bootstrap of the batch.

  `call` returns an `EnsembleNormal`: mean = member mean, stddev =
  disagreement (+ mean aleatoric std when std='learned'); `sample` picks a
  member (imagination='sample_member') or uses the member mean
  (imagination='mean').

  `transition_loss` weights member k's per-transition NLL [B, T'] by
  Poisson(1) bootstrap counts w_k drawn from the step's stateless seed,
  times the mask of real transitions, and averages the members' weighted
  means. With bootstrap=False every member sees the mask alone (they then
  differ only by their initialisation).

  members >= 2 is a rule of the config (dynamics.members), checked there.
  """

  def __init__(self, latent_dim: int, members: int = 5,
               std: str = 'learned', fixed_std: float = 1e-4,
               min_std: float = 0.01, max_std: float = 1.0,
               units: int = 256, layers: int = 2, activation: str = 'silu',
               imagination: str = 'sample_member', bootstrap: bool = True,
               **kwargs):
    super().__init__(**kwargs)
    _check_std_mode(std)
    if imagination not in ('sample_member', 'mean'):
      raise ValueError("imagination must be 'sample_member' or 'mean', got "
                       f'{imagination!r}.')
    self.latent_dim = latent_dim
    self.num_members = members
    self.std_mode = std
    self.imagination = imagination
    self.bootstrap = bootstrap
    self.members = [
        GaussianDynamics(latent_dim, std=std, fixed_std=fixed_std,
                         min_std=min_std, max_std=max_std, units=units,
                         layers=layers, activation=activation,
                         name=f'member_{k}', dtype=self.dtype_policy)
        for k in range(members)]

  def member_parameters(self, state, action) -> Tuple[tf.Tensor, tf.Tensor]:
    """The members' means and stds, each [..., K, D]."""
    # Calling each member (not just its layers) lets Keras build it.
    members = [m(state, action) for m in self.members]
    return (tf.stack([m.mean() for m in members], -2),
            tf.stack([m.stddev() for m in members], -2))

  def _distribution(self, loc, scale) -> EnsembleNormal:
    return EnsembleNormal(loc, scale, aleatoric=self.std_mode == 'learned',
                          sample_member=self.imagination == 'sample_member')

  def call(self, state, action):
    return self._distribution(*self.member_parameters(state, action))

  def get_config(self):
    return {**super().get_config(), **_gaussian_arguments(self.members[0]),
            'members': self.num_members, 'imagination': self.imagination,
            'bootstrap': self.bootstrap}

  def bootstrap_weights(self, mask: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Per-member weights [K, *mask.shape]: bootstrap counts times mask."""
    if not self.bootstrap:
      return tf.tile(mask[None], [self.num_members] + [1] * len(mask.shape))
    return poisson_bootstrap_weights(
        tf.shape(mask), self.num_members, seed) * mask[None]

  def transition_loss(self, state, action, target, mask, seed=None):
    if seed is None and self.bootstrap:
      raise ValueError('The ensemble needs a seed for its bootstrap.')
    weights = self.bootstrap_weights(mask, seed)  # [K, B, T']
    loc, scale = self.member_parameters(state, action)  # [B, T', K, D]
    member_nll = -distributions.normal(loc, scale).log_prob(
        target[..., None, :])  # [B, T', K]
    losses = [masked_mean(member_nll[..., k], weights[k])
              for k in range(self.num_members)]
    loss = tf.add_n(losses) / float(self.num_members)
    prediction = self._distribution(loc, scale)
    metrics = {
        'dynamics_nll': masked_mean(-prediction.log_prob(target), mask),
        'dynamics_member_nll': loss,
        'dynamics_disagreement': masked_mean(
            tf.reduce_mean(prediction.disagreement(), -1), mask),
    }
    metrics.update(prediction_metrics(prediction, target, mask))
    return loss, metrics


@DYNAMICS.register('mixture')
class MixtureDynamics(DynamicsModel):
  """K diagonal Gaussians mixed by predicted weights (tfd.MixtureSameFamily).

  One MLP predicts the mixture logits [..., K], the component means
  [..., K, D] and (std='learned') the component stds, squashed into
  [min_std, max_std]; std='fixed' gives every component `fixed_std`.
  mean() and stddev() are the mixture's own (law of total variance);
  samples pick a component, then sample it reparameterised.

  components >= 2 is a rule of the config (dynamics.components), checked
  there: one component would be the Gaussian model with extra logits.
  """

  def __init__(self, latent_dim: int, components: int = 3,
               std: str = 'learned', fixed_std: float = 1e-4,
               min_std: float = 0.01, max_std: float = 1.0,
               units: int = 256, layers: int = 2, activation: str = 'silu',
               **kwargs):
    super().__init__(**kwargs)
    self.num_components = components
    _build_gaussian_layers(self, latent_dim, components * latent_dim, std,
                           fixed_std, min_std, max_std, units, layers,
                           activation)
    self.logits = keras.layers.Dense(components, name='logits',
                                     dtype=self.dtype_policy)

  def call(self, state, action):
    hidden = self.mlp(tf.concat([state, action], -1))
    shape = tf.concat(
        [tf.shape(hidden)[:-1], [self.num_components, self.latent_dim]], 0)
    mean = tf.reshape(tf.cast(self.mean(hidden), tf.float32), shape)
    raw_std = (tf.reshape(tf.cast(self.std(hidden), tf.float32), shape)
               if self.std_mode == 'learned' else None)
    scale = _scale(raw_std, self.std_mode, self.fixed_std, self.min_std,
                   self.max_std, mean)
    return tfd.MixtureSameFamily(
        mixture_distribution=tfd.Categorical(
            logits=tf.cast(self.logits(hidden), tf.float32)),
        components_distribution=distributions.normal(mean, scale))

  def get_config(self):
    return {**super().get_config(), **_gaussian_arguments(self),
            'components': self.num_components}
