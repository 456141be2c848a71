"""Symlog space for inputs and targets (imagination.symlog: true).

symlog(x) = sign(x) log(1 + |x|) squashes large magnitudes, so one network
and one learning rate fit observations, rewards and returns of any scale.
The wrappers here put the existing components into symlog space without
changing them or the world model:

  * `SymlogInputs(encoder)`: the encoder sees symlog(observation) [..., O].
    `WorldModel.encode`, the world-model loss, the acting policy and the
    exported serving policy all go through the encoder, so all agree.
  * `SymlogHead(head)`: the head's distribution lives in symlog space.
    `log_prob(x)` scores symlog(x) (so the NLL regresses symlog targets),
    `mean()` / `mode()` / `sample()` return symexp of the prediction (so
    imagination, value targets and planning read ordinary rewards and
    values). Used for the reward head, the decoder and both critics.

`SymlogDistribution.log_prob` is the symlog-space NLL, not a density over x:
it leaves out log |d symlog(x) / dx|, which does not depend on the
parameters and so does not change any gradient.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from wm_tf.distributions import symexp, symlog


class SymlogDistribution:
  """A distribution over x given by a `base` distribution over symlog(x).

  Args:
    base: any TFP distribution over symlog-space values, of the shape of x
      ([...] for scalars, [..., D] for vectors with event rank 1).
  """

  def __init__(self, base):
    self.base = base

  def log_prob(self, x: tf.Tensor) -> tf.Tensor:
    return self.base.log_prob(symlog(x))

  def mean(self) -> tf.Tensor:
    return symexp(self.base.mean())

  def mode(self) -> tf.Tensor:
    return symexp(self.base.mode())

  def sample(self, sample_shape=(), seed=None) -> tf.Tensor:
    return symexp(self.base.sample(sample_shape, seed=seed))

  def stddev(self) -> tf.Tensor:
    """The std in symlog space (a scale-free spread)."""
    return self.base.stddev()


class SymlogInputs(keras.Model):
  """Applies symlog to the inputs of `inner`: x [..., O] -> inner(symlog(x)).

  Example:
    encoder = SymlogInputs(VectorEncoder(units=32), name='encoder')
  """

  def __init__(self, inner: keras.Model, **kwargs):
    super().__init__(**kwargs)
    self.inner = inner
    if hasattr(inner, 'output_dim'):
      self.output_dim = inner.output_dim

  def call(self, x):
    return self.inner(symlog(x))


class SymlogHead(keras.Model):
  """A head whose distribution is over symlog(x): state -> SymlogDistribution.

  Example:
    critic = SymlogHead(ValueHead(units=32), name='critic')
    critic(states).mean()  # values in ordinary units, [...]
  """

  def __init__(self, inner: keras.Model, **kwargs):
    super().__init__(**kwargs)
    self.inner = inner

  def call(self, state):
    return SymlogDistribution(self.inner(state))
