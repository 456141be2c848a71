"""Loss functions shared by the world model and its components: pure math.

No models and no config here: tensors in, tensors out, shapes stated.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import tensorflow as tf

from wm_tf import replicas


def masked_mean(values: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
  """Mean of `values` over entries where mask = 1 (0 if there are none).

  `values` and `mask` have the same shape; `mask` may hold non-negative
  weights (e.g. bootstrap counts) instead of 0/1.

  Run once per replica under a tf.distribute strategy with R replicas, each
  replica divides its masked sum by the global mask count / R: the mean of
  the R results is then the masked mean of the global batch (replicas'
  mask counts differ, so a mean of per-replica masked means would not be).
  """
  count = tf.reduce_sum(mask)
  if replicas.num_replicas() > 1:
    count = replicas.mean(count)
    return tf.reduce_sum(values * mask) / tf.maximum(
        count, 1.0 / replicas.num_replicas())
  return tf.reduce_sum(values * mask) / tf.maximum(count, 1.0)


class LossScaleError(ValueError):
  """Loss scales that do not match a loss's named terms."""


def check_loss_scales(key: str, scales: Mapping[str, float],
                      terms: Sequence[str]) -> None:
  """Raises LossScaleError unless `scales` has exactly one scale per term.

  Args:
    key: the config key of the scales, for the message.
    scales: {term name: scale}.
    terms: the names of the terms the loss returns.
  """
  allowed = ', '.join(terms)
  for name in terms:
    if name not in scales:
      raise LossScaleError(f'{key}.{name} is missing: every loss term needs '
                           f'a scale; allowed: {allowed}.')
  for name in scales:
    if name not in terms:
      raise LossScaleError(f'{key}.{name} is not a loss term; allowed: '
                           f'{allowed}.')


def weighted_total(terms: Mapping[str, tf.Tensor],
                   scales: Mapping[str, float]) -> tf.Tensor:
  """sum_k scales[k] * terms[k], summed in the order of `terms`.

  Args:
    terms: {name: scalar loss term}.
    scales: {name: weight}, one for every term.
  """
  names = list(terms)
  total = scales[names[0]] * terms[names[0]]
  for name in names[1:]:
    total = total + scales[name] * terms[name]
  return total


def kl_normal_to_standard(mean: tf.Tensor, std: tf.Tensor) -> tf.Tensor:
  """KL(N(mean, std^2) || N(0, 1)) of diagonal Normals, summed over [..., D].

  Closed form per dimension: (std^2 + mean^2 - 1) / 2 - log std.

  Args:
    mean, std: [..., D].

  Returns:
    [...].
  """
  return tf.reduce_sum(
      0.5 * (tf.square(std) + tf.square(mean) - 1.0) - tf.math.log(std), -1)


def kl_categorical(q_logits: tf.Tensor, p_logits: tf.Tensor) -> tf.Tensor:
  """KL(q || p) of categoricals given by logits, summed over the classes.

  sum_k q_k (log q_k - log p_k), q = softmax(q_logits), p likewise; the
  logits need not be normalised.

  Args:
    q_logits, p_logits: [..., K].

  Returns:
    [...].
  """
  log_q = tf.nn.log_softmax(q_logits, -1)
  log_p = tf.nn.log_softmax(p_logits, -1)
  return tf.reduce_sum(tf.exp(log_q) * (log_q - log_p), -1)


def info_nce(query: tf.Tensor, key: tf.Tensor, mask: tf.Tensor,
             temperature: float) -> tf.Tensor:
  """InfoNCE of matching rows, the other valid rows being the negatives.

  Rows are L2-normalised; logits[i, j] = <q_i, k_j> / temperature. Query i's
  positive is key i; its negatives are the keys j != i with mask_j = 1.
  The loss is the cross-entropy of the positive, averaged over the queries
  with mask_i = 1 (0 if there are none).

  Args:
    query: [N, P].
    key: [N, P].
    mask: [N], 1 for rows that take part (both as query and as key).
    temperature: > 0.

  Returns:
    A scalar.
  """
  query = tf.math.l2_normalize(query, -1)
  key = tf.math.l2_normalize(key, -1)
  logits = tf.matmul(query, key, transpose_b=True) / temperature  # [N, N]
  # Keys outside the mask are pushed out of the softmax.
  logits += (1.0 - mask)[None, :] * -1e9
  log_softmax = tf.nn.log_softmax(logits, -1)
  positive = tf.linalg.diag_part(log_softmax)
  return masked_mean(-positive, mask)


ADVANTAGE_WEIGHTINGS = ('signed', 'positive')


def advantage_weighted_nll(log_prob: tf.Tensor, advantage: tf.Tensor,
                           entropy: tf.Tensor, weights: tf.Tensor,
                           entropy_scale: float,
                           weighting: str) -> tf.Tensor:
  """Off-policy actor loss on logged actions: a weighted likelihood.

    loss = -mean(weights * (log_prob * g(advantage) + entropy_scale * entropy))

  with g(A) = A ('signed': REINFORCE on the logged actions; actions worse
  than expected get their probability lowered, which is unbounded below
  for a continuous density) or g(A) = max(A, 0) ('positive': a maximum
  likelihood of the better-than-expected actions, bounded above for a
  density whose std has a floor). No gradient flows into `advantage`.

  Args:
    log_prob: [...] log pi(a | s) of the logged actions.
    advantage: [...] their (normalised) advantages.
    entropy: [...] the policy's entropy in s.
    weights: [...] per-step weights (0 where a step has no target).
    entropy_scale: scale of the entropy bonus.
    weighting: 'signed' or 'positive'.

  Returns:
    Scalar loss.
  """
  if weighting not in ADVANTAGE_WEIGHTINGS:
    raise ValueError(f'weighting={weighting!r}; allowed: '
                     f'{", ".join(ADVANTAGE_WEIGHTINGS)}.')
  advantage = tf.stop_gradient(advantage)
  if weighting == 'positive':
    advantage = tf.maximum(advantage, 0.0)
  return -tf.reduce_mean(weights * (log_prob * advantage +
                                    entropy_scale * entropy))
