"""Distribution helpers shared by the components: pure TFP, no models."""

from __future__ import annotations

import contextlib
import threading

import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions
tfb = tfp.bijectors


def symlog(x: tf.Tensor) -> tf.Tensor:
  """sign(x) * log(1 + |x|): compresses large magnitudes, keeps sign."""
  return tf.sign(x) * tf.math.log1p(tf.abs(x))


def symexp(x: tf.Tensor) -> tf.Tensor:
  """The inverse of `symlog`: sign(x) * (exp(|x|) - 1)."""
  return tf.sign(x) * tf.math.expm1(tf.abs(x))


# The stateless RNG algorithm of every sample drawn by wm_tf. TFP's samplers
# use tf.random's 'auto_select', which XLA's CPU backend lowers to a slow
# generic path (docs/results.md has the timing); Philox is TF's own CPU/GPU
# default.
RNG_ALGORITHM = 'philox'
# The algorithm inside `xla_sampling()`: faster than Philox in the XLA train
# step (docs/results.md), but only XLA implements it: TensorFlow's own CPU
# kernels refuse it.
XLA_RNG_ALGORITHM = 'threefry'

_sampling = threading.local()


@contextlib.contextmanager
def xla_sampling():
  """Noise drawn (traced) in this thread inside it by `standard_normal`
  and `uniform` uses XLA_RNG_ALGORITHM.

  For functions that are always compiled with XLA: enter it around the
  traced body, so that it is active while the function traces.
  """
  outer = getattr(_sampling, 'algorithm', None)
  _sampling.algorithm = XLA_RNG_ALGORITHM
  try:
    yield
  finally:
    _sampling.algorithm = outer


def sampling_algorithm() -> str:
  """The stateless RNG algorithm of `standard_normal` and `uniform` here
  and now."""
  return getattr(_sampling, 'algorithm', None) or RNG_ALGORITHM


def standard_normal(shape, seed: tf.Tensor, dtype=tf.float32) -> tf.Tensor:
  """N(0, 1) noise of `shape` from an int32 [2] stateless seed (Philox, or
  Threefry inside `xla_sampling()`)."""
  return tf.random.stateless_normal(shape, seed=seed, dtype=dtype,
                                    alg=sampling_algorithm())


def uniform(shape, seed: tf.Tensor, minval=0, maxval=None,
            dtype=tf.float32) -> tf.Tensor:
  """Uniform noise of `shape` in [minval, maxval) (maxval None: 1 for
  floats) from an int32 [2] stateless seed, with `standard_normal`'s
  algorithm. tf.random's default ('auto_select') compiles to the slow
  generic path on XLA's CPU backend: [5, 1024, 64] uniforms took 97 ms
  there, against 0.9 ms with Philox."""
  return tf.random.stateless_uniform(shape, seed=seed, minval=minval,
                                     maxval=maxval, dtype=dtype,
                                     alg=sampling_algorithm())


class Normal(tfd.Normal):
  """`tfd.Normal` whose samples use `standard_normal` (fast under XLA).

  Same parameters, log_prob and statistics as `tfd.Normal`; only the
  noise generator differs, so samples differ from TFP's for one seed.
  """

  def _sample_n(self, n, seed=None):
    loc = tf.convert_to_tensor(self.loc)
    scale = tf.convert_to_tensor(self.scale)
    shape = tf.concat([[n], tf.broadcast_dynamic_shape(
        tf.shape(loc), tf.shape(scale))], 0)
    noise = standard_normal(shape, tfp.random.sanitize_seed(seed),
                            dtype=self.dtype)
    return noise * scale + loc


class Deterministic(tfd.Deterministic):
  """`tfd.Deterministic` whose mean and mode are loc itself when it has no
  tolerances (then its batch shape is loc's own).

  TFP broadcasts loc to the batch shape, which puts a shape broadcast
  (BroadcastArgs) into every acting graph: ONNX runtimes and TFLite's
  built-in ops cannot run it.
  """

  def _mean(self):
    if self.parameters['atol'] is None and self.parameters['rtol'] is None:
      return tf.identity(tf.convert_to_tensor(self.loc))
    return super()._mean()


def deterministic(loc: tf.Tensor) -> tfd.Distribution:
  """A point mass over vectors [..., D] (event rank 1)."""
  return tfd.Independent(Deterministic(loc), reinterpreted_batch_ndims=1)


def normal(loc: tf.Tensor, scale) -> tfd.Distribution:
  """A diagonal Normal over vectors [..., D] (event rank 1)."""
  return tfd.Independent(Normal(loc, scale), reinterpreted_batch_ndims=1)


class StraightThroughOneHot(tfd.OneHotCategorical):
  """One-hot categorical whose samples carry the gradient of the probs.

  sample = one_hot + (probs - stop_gradient(probs)): the forward value is the
  one-hot vector, the backward pass sees d sample / d probs = identity.
  """

  def __init__(self, logits, name='StraightThroughOneHot'):
    parameters = dict(locals())
    super().__init__(logits=logits, dtype=tf.float32, name=name)
    self._parameters = parameters

  @classmethod
  def _parameter_properties(cls, dtype, num_classes=None):
    return dict(logits=tfp.util.ParameterProperties(event_ndims=1))

  def _sample_n(self, n, seed=None):
    sample = super()._sample_n(n, seed=seed)
    probs = tf.nn.softmax(self.logits, axis=-1)
    return sample + (probs - tf.stop_gradient(probs))  # exactly one-hot

  def deterministic_action(self):
    """The most likely action as a one-hot vector [..., A]."""
    return tf.one_hot(tf.argmax(self.logits, -1), tf.shape(self.logits)[-1])


def unimix_logits(logits: tf.Tensor, unimix: float) -> tf.Tensor:
  """Logits of (1 - unimix) * softmax(logits) + unimix / K over [..., K].

  Every class keeps a probability of at least unimix / K, so a KL to or
  from the mixture stays finite and its gradient bounded however sharp
  the network's own softmax gets. unimix 0 returns the normalised logits.
  """
  logits = tf.convert_to_tensor(logits, tf.float32)
  if not unimix:
    return tf.nn.log_softmax(logits, -1)
  classes = float(logits.shape[-1])
  probs = (1.0 - unimix) * tf.nn.softmax(logits, -1) + unimix / classes
  return tf.math.log(probs)


def straight_through_one_hot(logits: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  """A one-hot sample [..., K] of softmax(logits) with the probs' gradient.

  The class is the Gumbel-max draw argmax(logits + Gumbel noise), the noise
  from `uniform` (stateless, int32 [2] seed, fast under XLA); the value is
  exactly one-hot and d sample / d probs is the identity:
  one_hot + probs - stop_gradient(probs).
  """
  logits = tf.convert_to_tensor(logits, tf.float32)
  # The smallest float32 u > 0: the noise -log(-log(u)) stays finite.
  u = uniform(tf.shape(logits), seed, minval=1.2e-38, maxval=1.0)
  index = tf.argmax(logits - tf.math.log(-tf.math.log(u)), -1)
  probs = tf.nn.softmax(logits, -1)
  one_hot = tf.one_hot(index, logits.shape[-1], dtype=probs.dtype)
  return one_hot + (probs - tf.stop_gradient(probs))


class SquashedNormal(tfd.TransformedDistribution):
  """tanh-squashed diagonal Normal, affinely mapped into [low, high].

  The entropy is that of the pre-tanh Normal (the squashed one has no closed
  form); its gradient still pushes the policy away from collapse.
  """

  def __init__(self, loc, scale, low, high, name='SquashedNormal'):
    parameters = dict(locals())
    low = tf.convert_to_tensor(low, tf.float32)
    high = tf.convert_to_tensor(high, tf.float32)
    self._low, self._high = low, high
    self._base = normal(loc, scale)
    bijector = tfb.Chain([
        tfb.Shift((high + low) / 2.0),
        tfb.Scale((high - low) / 2.0),
        tfb.Tanh(),
    ])
    super().__init__(distribution=self._base, bijector=bijector, name=name)
    self._parameters = parameters

  @classmethod
  def _parameter_properties(cls, dtype, num_classes=None):
    return dict(
        loc=tfp.util.ParameterProperties(event_ndims=1),
        scale=tfp.util.ParameterProperties(event_ndims=1),
        low=tfp.util.ParameterProperties(event_ndims=1),
        high=tfp.util.ParameterProperties(event_ndims=1))

  def entropy(self):
    return self._base.entropy()

  def log_prob(self, value):
    # Keep the tanh inverse finite at the bounds.
    margin = 1e-4 * (self._high - self._low)
    return super().log_prob(
        tf.clip_by_value(value, self._low + margin, self._high - margin))

  def deterministic_action(self):
    """tanh of the pre-squash mean, mapped into the bounds: [..., A]."""
    return self.bijector.forward(self._base.mean())


# Two-hot discrete regression (DreamerV3): a scalar's symlog is spread over
# the two neighbouring points of a uniform grid of bins on [-limit, limit].
# 255 bins on [-20, 20] (step 0.157 in symlog space) cover |x| up to 4.9e8.
TWOHOT_BINS = 255
TWOHOT_LIMIT = 20.0


def twohot(y: tf.Tensor, low: float, high: float, count: int) -> tf.Tensor:
  """y [...] -> weights [..., count] on the grid linspace(low, high, count).

  The two bins around clip(y, low, high) get weights in [0, 1] that sum to
  1 and keep its position: sum_k w_k * bin_k = clip(y, low, high).
  """
  y = tf.convert_to_tensor(y, tf.float32)
  step = (high - low) / (count - 1)
  position = (tf.clip_by_value(y, low, high) - low) / step  # in [0, K - 1]
  below = tf.minimum(tf.floor(position), count - 2.0)
  weight_above = (position - below)[..., None]
  index = tf.cast(below, tf.int32)
  return (tf.one_hot(index, count) * (1.0 - weight_above)
          + tf.one_hot(index + 1, count) * weight_above)


class TwoHotSymlog:
  """A scalar distribution as a softmax over bins in symlog space.

  logits [..., K] weigh the bins b = linspace(-limit, limit, K). With
  p = softmax(logits):
    log_prob(x) [...] = sum_k twohot(symlog(x))_k log p_k, the negative
      cross-entropy of the two-hot target (its gradient in the logits is
      twohot - p, bounded whatever the scale of x);
    mean() = mode() [...] = symexp(sum_k p_k b_k).
  As with `wm_tf.agent.symlog.SymlogDistribution`, log_prob is a training
  objective in symlog space, not a density over x. `bins_distribution` is
  the `tfd.Categorical` over the bin indices.
  """

  def __init__(self, logits: tf.Tensor, limit: float = TWOHOT_LIMIT):
    self.logits = tf.convert_to_tensor(logits, tf.float32)
    self.limit = float(limit)
    self.count = int(self.logits.shape[-1])
    self.bins = tf.linspace(-self.limit, self.limit, self.count)

  @property
  def bins_distribution(self) -> tfd.Categorical:
    return tfd.Categorical(logits=self.logits)

  def log_prob(self, x: tf.Tensor) -> tf.Tensor:
    target = twohot(symlog(x), -self.limit, self.limit, self.count)
    return tf.reduce_sum(target * tf.nn.log_softmax(self.logits, -1), -1)

  def mean(self) -> tf.Tensor:
    probs = tf.nn.softmax(self.logits, -1)
    return symexp(tf.reduce_sum(probs * self.bins, -1))

  def mode(self) -> tf.Tensor:
    return self.mean()
