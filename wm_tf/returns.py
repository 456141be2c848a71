"""Return estimators for value targets over an imagined or replayed horizon.

Pure TensorFlow math: no models, no config. All tensors are batch-major,
time is axis 1, and everything is computed and returned as float32.

Shared index convention over a horizon of H transitions::

    state       s_0     s_1     s_2    ...   s_{H-1}     s_H
    values      V_0     V_1     V_2    ...   V_{H-1}     V_H    [B, H+1]
    rewards         r_0     r_1    ...   r_{H-2}  r_{H-1}       [B, H]
    discounts       d_0     d_1    ...   d_{H-2}  d_{H-1}       [B, H]

``r_t`` is the reward of the transition s_t -> s_{t+1} and
``d_t = gamma * continue(s_{t+1})``, so ``d_t = 0`` when s_{t+1} is terminal.
``V_H`` is the bootstrap value of the final state. Every estimator returns one
target per transition, ``[B, H]``, where entry t is a target for ``V(s_t)``.

The horizon H must be static: the backward recursions are unrolled in Python
over H steps, which keeps them usable inside ``tf.function(jit_compile=True)``.
The batch size B may be dynamic.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import tensorflow as tf

from wm_tf.registry import Registry

__all__ = [
    "RETURN_ESTIMATORS",
    "RETURN_TYPES",
    "gae",
    "lambda_returns",
    "monte_carlo_returns",
    "n_step_returns",
    "value_targets",
]


# --------------------------------------------------------------------------
# Input handling.


def _as_float32(x, name: str) -> tf.Tensor:
  x = tf.convert_to_tensor(x, name=name)
  if x.dtype != tf.float32:
    x = tf.cast(x, tf.float32)
  return x


def _check_rank(x: tf.Tensor, rank: int, name: str, layout: str) -> None:
  if x.shape.rank is not None and x.shape.rank != rank:
    raise ValueError(
        f"{name} must have rank {rank} with layout {layout}, "
        f"got shape {x.shape}.")


def _check_same_batch(tensors: Dict[str, tf.Tensor]) -> None:
  sizes = {
      name: t.shape[0] for name, t in tensors.items()
      if t.shape.rank is not None and t.shape[0] is not None
  }
  if len(set(sizes.values())) > 1:
    raise ValueError(f"Batch sizes (axis 0) disagree: {sizes}.")


def _prepare(
    rewards, discounts, values=None
) -> Tuple[tf.Tensor, tf.Tensor, Optional[tf.Tensor], int]:
  """Casts to float32 and checks static shapes.

  Returns:
    (rewards [B, H], discounts [B, H], values [B, H+1] or None, H).
  """
  rewards = _as_float32(rewards, "rewards")
  discounts = _as_float32(discounts, "discounts")
  _check_rank(rewards, 2, "rewards", "[B, H]")
  _check_rank(discounts, 2, "discounts", "[B, H]")
  horizon = rewards.shape[1] if rewards.shape.rank is not None else None
  if horizon is None:
    raise ValueError(
        "The horizon H (axis 1 of rewards [B, H]) must be static, got "
        f"shape {rewards.shape}.")
  if not rewards.shape.is_compatible_with(discounts.shape):
    raise ValueError(
        "discounts must have the shape of rewards [B, H], got discounts "
        f"{discounts.shape} and rewards {rewards.shape}.")
  tensors = {"rewards": rewards, "discounts": discounts}
  if values is not None:
    values = _as_float32(values, "values")
    _check_rank(values, 2, "values", "[B, H+1]")
    if values.shape[1] is not None and values.shape[1] != horizon + 1:
      raise ValueError(
          f"values must have H+1 = {horizon + 1} steps (V(s_0) ... "
          f"V(s_H), the last one the bootstrap), got values of shape "
          f"{values.shape} for rewards of shape {rewards.shape}.")
    tensors["values"] = values
  _check_same_batch(tensors)
  return rewards, discounts, values, int(horizon)


def _prepare_lambda(lambda_) -> tf.Tensor:
  if isinstance(lambda_, (int, float)) and not 0.0 <= lambda_ <= 1.0:
    raise ValueError(f"lambda_ must be in [0, 1], got {lambda_}.")
  lambda_ = _as_float32(lambda_, "lambda_")
  if lambda_.shape.rank is not None and lambda_.shape.rank != 0:
    raise ValueError(
        f"lambda_ must be a scalar, got shape {lambda_.shape}.")
  return lambda_


def _backward_linear_recursion(
    offsets: tf.Tensor, scales: tf.Tensor, last: tf.Tensor
) -> tf.Tensor:
  """Solves x_t = offsets_t + scales_t * x_{t+1} backwards from x_H = last.

  Args:
    offsets: [B, H].
    scales: [B, H].
    last: [B], x_H.

  Returns:
    [B, H], x_0 ... x_{H-1}.
  """
  horizon = offsets.shape[1]
  if horizon == 0:
    return tf.zeros_like(offsets)
  outputs = [None] * horizon
  x = last
  for t in reversed(range(horizon)):
    x = offsets[:, t] + scales[:, t] * x
    outputs[t] = x
  return tf.stack(outputs, axis=1)


# --------------------------------------------------------------------------
# Estimators.


def lambda_returns(rewards, values, discounts, lambda_) -> tf.Tensor:
  """TD(lambda) returns, computed by the backward recursion.

    R_t = r_t + d_t * ((1 - lambda) * V_{t+1} + lambda * R_{t+1}),
    R_H = V_H.

  Index alignment (H = 3); each R_t reads r_t, d_t, V_{t+1} and R_{t+1}::

    values      V_0     V_1     V_2     V_3
                         |       |       |
    rewards     r_0     r_1     r_2      |
    discounts   d_0     d_1     d_2      |
                 |       |       |       v
    returns     R_0 <-- R_1 <-- R_2 <-- R_3 = V_3
    output    [:, 0]  [:, 1]  [:, 2]          (R_3 is not returned)

  ``lambda_ = 1`` gives the Monte-Carlo return bootstrapped from V_H;
  ``lambda_ = 0`` gives the one-step TD target r_t + d_t V_{t+1}.
  V_0 is not read: it is the prediction that R_0 is a target for.

  Args:
    rewards: [B, H], r_t is the reward of the transition t -> t+1.
    values: [B, H+1], V(s_0) ... V(s_H); the last one is the bootstrap.
    discounts: [B, H], d_t = gamma * continue(s_{t+1}).
    lambda_: scalar in [0, 1].

  Returns:
    [B, H] float32, R_0 ... R_{H-1}.

  Example:
    >>> r = tf.ones([2, 3]); v = tf.zeros([2, 4]); d = tf.fill([2, 3], .5)
    >>> lambda_returns(r, v, d, 1.0)[0].numpy()
    array([1.75, 1.5 , 1.  ], dtype=float32)
  """
  rewards, discounts, values, _ = _prepare(rewards, discounts, values)
  lambda_ = _prepare_lambda(lambda_)
  offsets = rewards + discounts * (1.0 - lambda_) * values[:, 1:]
  return _backward_linear_recursion(
      offsets, discounts * lambda_, values[:, -1])


def monte_carlo_returns(rewards, discounts, bootstrap) -> tf.Tensor:
  """Discounted reward sums, bootstrapped from the final state.

    G_t = sum_{k=t}^{H-1} (d_t ... d_{k-1}) r_k + (d_t ... d_{H-1}) V_H.

  Equal to ``lambda_returns`` with ``lambda_ = 1``.

  Args:
    rewards: [B, H], r_t is the reward of the transition t -> t+1.
    discounts: [B, H], d_t = gamma * continue(s_{t+1}).
    bootstrap: [B], V(s_H).

  Returns:
    [B, H] float32, G_0 ... G_{H-1}.
  """
  rewards, discounts, _, _ = _prepare(rewards, discounts)
  bootstrap = _as_float32(bootstrap, "bootstrap")
  _check_rank(bootstrap, 1, "bootstrap", "[B]")
  _check_same_batch({"rewards": rewards, "bootstrap": bootstrap})
  return _backward_linear_recursion(rewards, discounts, bootstrap)


def n_step_returns(rewards, values, discounts, n: int) -> tf.Tensor:
  """n-step returns, truncated at the end of the horizon.

    G_t = sum_{k=0}^{m-1} (d_t ... d_{t+k-1}) r_{t+k}
       + (d_t ... d_{t+m-1}) V_{t+m},        m = min(n, H - t).

  Windows that would run past the horizon stop at s_H and bootstrap from
  V_H. With ``n >= H`` this is the Monte-Carlo return bootstrapped from V_H;
  with ``n = 1`` it is the one-step TD target r_t + d_t V_{t+1}.

  Args:
    rewards: [B, H], r_t is the reward of the transition t -> t+1.
    values: [B, H+1], V(s_0) ... V(s_H).
    discounts: [B, H], d_t = gamma * continue(s_{t+1}).
    n: Python int >= 1, the number of rewards before bootstrapping.

  Returns:
    [B, H] float32, G_0 ... G_{H-1}.
  """
  if isinstance(n, bool) or not isinstance(n, int) or n < 1:
    raise ValueError(f"n must be a Python int >= 1, got {n!r}.")
  rewards, discounts, values, horizon = _prepare(rewards, discounts, values)
  # targets[:, t] holds the k-step target of s_t for t = 0 ... H, grown one
  # step at a time by G^k_t = r_t + d_t G^{k-1}_{t+1}. Pinning G^k_H = V_H
  # is what truncates windows at the horizon; beyond k = H nothing changes.
  targets = values
  for _ in range(min(n, horizon)):
    longer = rewards + discounts * targets[:, 1:]
    targets = tf.concat([longer, values[:, -1:]], axis=1)
  return targets[:, :-1]


def gae(rewards, values, discounts, lambda_) -> Tuple[tf.Tensor, tf.Tensor]:
  """Generalized advantage estimation (Schulman et al., 2016).

    delta_t = r_t + d_t V_{t+1} - V_t,
    A_t     = delta_t + d_t * lambda * A_{t+1},        A_H = 0.

  The returns A_t + V_t equal ``lambda_returns`` on the same inputs.

  Args:
    rewards: [B, H], r_t is the reward of the transition t -> t+1.
    values: [B, H+1], V(s_0) ... V(s_H); the last one is the bootstrap.
    discounts: [B, H], d_t = gamma * continue(s_{t+1}).
    lambda_: scalar in [0, 1].

  Returns:
    (advantages, returns), both [B, H] float32, with
    returns = advantages + values[:, :-1].
  """
  rewards, discounts, values, _ = _prepare(rewards, discounts, values)
  lambda_ = _prepare_lambda(lambda_)
  deltas = rewards + discounts * values[:, 1:] - values[:, :-1]
  advantages = _backward_linear_recursion(
      deltas, discounts * lambda_, tf.zeros_like(values[:, -1]))
  return advantages, advantages + values[:, :-1]


# --------------------------------------------------------------------------
# Registry, keyed by the config's `returns.type` string. Each entry maps
# (rewards, values, discounts, lambda_, n) to [B, H] value targets.

RETURN_ESTIMATORS = Registry('returns')


@RETURN_ESTIMATORS.register("lambda")
def _lambda_targets(rewards, values, discounts, lambda_, n):
  del n
  return lambda_returns(rewards, values, discounts, lambda_)


@RETURN_ESTIMATORS.register("monte_carlo")
def _monte_carlo_targets(rewards, values, discounts, lambda_, n):
  del lambda_, n
  # Check values against rewards before slicing off the bootstrap.
  rewards, discounts, values, _ = _prepare(rewards, discounts, values)
  return monte_carlo_returns(rewards, discounts, values[:, -1])


@RETURN_ESTIMATORS.register("n_step")
def _n_step_targets(rewards, values, discounts, lambda_, n):
  del lambda_
  return n_step_returns(rewards, values, discounts, n)


@RETURN_ESTIMATORS.register("gae")
def _gae_targets(rewards, values, discounts, lambda_, n):
  del n
  return gae(rewards, values, discounts, lambda_)[1]


# In registration order (the order the docs list them in).
RETURN_TYPES: Tuple[str, ...] = RETURN_ESTIMATORS.registered()


def value_targets(kind: str, rewards, values, discounts, *,
                  lambda_=0.95, n: int = 5) -> tf.Tensor:
  """Value targets from the return estimator named ``kind``.

  Args:
    kind: one of ``RETURN_TYPES``: "lambda", "monte_carlo", "n_step",
      "gae". "monte_carlo" bootstraps from values[:, -1]; "gae" gives
      its returns (advantages + values[:, :-1]).
    rewards: [B, H], r_t is the reward of the transition t -> t+1.
    values: [B, H+1], V(s_0) ... V(s_H).
    discounts: [B, H], d_t = gamma * continue(s_{t+1}).
    lambda_: used by "lambda" and "gae".
    n: used by "n_step".

  Returns:
    [B, H] float32 targets for V(s_0) ... V(s_{H-1}).

  Raises:
    ValueError: if ``kind`` is not one of ``RETURN_TYPES``.
  """
  if not isinstance(kind, str) or kind not in RETURN_TYPES:
    raise ValueError(
        f"Unknown return estimator kind {kind!r}; expected one of "
        f"{', '.join(repr(k) for k in RETURN_TYPES)}.")
  return RETURN_ESTIMATORS.get(kind)(rewards, values, discounts, lambda_, n)
