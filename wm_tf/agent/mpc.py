"""Model-predictive control: planning action sequences in the world model.

A planner scores candidate action sequences by rolling the world model's
dynamics (means, no sampling) forward from a latent state:

    s_0 = start,  s_{t+1} = E[dynamics(s_t, a_t)],       t = 0 ... H-1
    score = sum_t (prod_{k<t} gamma c_{k+1}) r_{t+1}
            + (prod_{k<H} gamma c_{k+1}) V(s_H)     (if a value is given)

with r_{t+1} = E[reward(s_{t+1})] and c_{t+1} = E[continue(s_{t+1})], the
alignment imagination uses (`wm_tf.agent.imagination`). It returns the first
action of the plan; acting replans every step.

Registry `PLANNERS`, config `mpc.method`:
  * 'random_shooting': `samples` uniform sequences; the best one's first
    action.
  * 'cem': the cross-entropy method. A sampling distribution over sequences
    (independent per step and action dimension: a Normal clipped to the
    bounds for continuous actions, a categorical for discrete ones) is
    refit `iterations` times to the `elites` best of `samples`; the first
    action of its final mean (continuous) or mode (discrete) is returned.

Actions must be bounded: one-hot vectors [..., A] for Discrete spaces or
vectors inside [low, high] for Box spaces. Everything is static-shaped but
the number of states N, so a planner compiles with XLA.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from wm_tf import distributions
from wm_tf.config import ConfigError
from wm_tf.registry import Registry

PLANNERS = Registry('mpc.method')


def check_action_space(discrete: bool, low: Optional[Sequence[float]],
                       high: Optional[Sequence[float]], env_id: str = '',
                       user: str = "imagination.mode='mpc'") -> None:
  """Raises ConfigError unless actions are Discrete or a bounded Box."""
  if discrete:
    return
  if (low is None or high is None or
      not np.all(np.isfinite(np.asarray(low, np.float64))) or
      not np.all(np.isfinite(np.asarray(high, np.float64)))):
    raise ConfigError(
        f'Config key {user} and the action space of env.id={env_id!r} '
        f'conflict: MPC samples actions inside the bounds, but the Box '
        f'action space is unbounded (low={low}, high={high}). Allowed: '
        'Discrete or a Box with finite low and high.')


class Planner(tf.Module):
  """Base planner. `plan(start [N, D], seed int32 [2]) -> actions [N, A]`.

  Args:
    world_model: has `dynamics(state, action)`, `reward(state)` and
      `continue_probability(state)` (see `wm_tf.world_model.WorldModel`).
    value: state [M, D] -> distribution over values [M], or None for no
      terminal value.
    action_dim: A.
    discrete: one-hot actions (else continuous inside [low, high]).
    low, high: continuous bounds [A].
    horizon: H, planned steps.
    samples: S, sequences per state and iteration.
    iterations, elites: CEM's refits and elite count.
    gamma: discount.
  """

  def __init__(self, world_model, value, action_dim: int, discrete: bool,
               low=None, high=None, horizon: int = 12, samples: int = 256,
               iterations: int = 4, elites: int = 32, gamma: float = 0.99,
               name: str = 'planner'):
    super().__init__(name=name)
    check_action_space(discrete, low, high)
    self.world_model = world_model
    self.value = value
    self.action_dim = action_dim
    self.discrete = discrete
    self.low = None if discrete else tf.constant(low, tf.float32)
    self.high = None if discrete else tf.constant(high, tf.float32)
    self.horizon = horizon
    self.samples = samples
    self.iterations = iterations
    self.elites = min(elites, samples)
    self.gamma = gamma

  def score(self, start: tf.Tensor, actions: tf.Tensor) -> tf.Tensor:
    """Discounted model returns of sequences.

    Args:
      start: [N, D] latent states.
      actions: [N, S, H, A] action sequences, a_t taken in s_t.

    Returns:
      [N, S] scores.
    """
    n = tf.shape(actions)[0]
    s = tf.shape(actions)[1]
    wm = self.world_model
    state = tf.repeat(start, s, axis=0)  # [N * S, D], row n * S + i
    flat = tf.reshape(actions, [n * s, self.horizon, self.action_dim])
    total = tf.zeros([n * s])
    discount = tf.ones([n * s])
    for t in range(self.horizon):
      state = wm.dynamics(state, flat[:, t]).mean()
      total += discount * wm.reward(state).mean()
      discount *= self.gamma * wm.continue_probability(state)
    if self.value is not None:
      total += discount * self.value(state).mean()
    return tf.reshape(total, [n, s])

  def _uniform(self, n, seed) -> tf.Tensor:
    """Uniform random sequences [N, S, H, A]."""
    shape = [n, self.samples, self.horizon]
    if self.discrete:
      index = distributions.uniform(shape, seed, 0, self.action_dim,
                                    dtype=tf.int32)
      return tf.one_hot(index, self.action_dim)
    u = distributions.uniform(shape + [self.action_dim], seed)
    return self.low + (self.high - self.low) * u

  def plan(self, start: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    raise NotImplementedError


@PLANNERS.register('random_shooting')
class RandomShooting(Planner):
  """The best of `samples` uniform sequences; returns its first action."""

  def plan(self, start, seed):
    n = tf.shape(start)[0]
    actions = self._uniform(n, seed)
    best = tf.argmax(self.score(start, actions), axis=1, output_type=tf.int32)
    return tf.gather(actions[:, :, 0], best, batch_dims=1)  # [N, A]


@PLANNERS.register('cem')
class CrossEntropyMethod(Planner):
  """Refits a per-step sampling distribution to the elite sequences."""

  def plan(self, start, seed):
    n = tf.shape(start)[0]
    seeds = tfp.random.split_seed(seed, n=self.iterations)
    shape = [n, self.horizon, self.action_dim]
    if self.discrete:
      logits = tf.zeros(shape)  # uniform categorical per step
      for i in range(self.iterations):
        actions = self._sample_discrete(logits, seeds[i])
        elite = self._elites(start, actions)  # [N, E, H, A]
        probs = tf.reduce_mean(elite, axis=1)
        logits = tf.math.log(probs)  # -inf for actions no elite took
      index = tf.argmax(logits[:, 0], axis=-1)
      return tf.one_hot(index, self.action_dim)
    mean = tf.broadcast_to((self.low + self.high) / 2.0, shape)
    std = tf.broadcast_to((self.high - self.low) / 2.0, shape)
    for i in range(self.iterations):
      noise = distributions.standard_normal(
          [n, self.samples, self.horizon, self.action_dim], seeds[i])
      actions = tf.clip_by_value(mean[:, None] + std[:, None] * noise,
                                 self.low, self.high)
      elite = self._elites(start, actions)
      mean = tf.reduce_mean(elite, axis=1)
      std = tf.math.reduce_std(elite, axis=1)
    return mean[:, 0]

  def _sample_discrete(self, logits, seed):
    """One-hot samples [N, S, H, A] by the Gumbel-max trick."""
    n = tf.shape(logits)[0]
    u = distributions.uniform(
        [n, self.samples, self.horizon, self.action_dim], seed,
        minval=1e-6, maxval=1.0 - 1e-6)
    gumbel = -tf.math.log(-tf.math.log(u))
    index = tf.argmax(logits[:, None] + gumbel, axis=-1)
    return tf.one_hot(index, self.action_dim)

  def _elites(self, start, actions):
    scores = self.score(start, actions)
    top = tf.math.top_k(scores, k=self.elites).indices  # [N, E]
    return tf.gather(actions, top, batch_dims=1)
