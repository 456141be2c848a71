"""How far a model's imagined outcomes are from the true ones: pure NumPy.

Sample sets are arrays [N, D] (or [N] for one dimension); every function
returns a float. Used by the design lab (benchmarks/design_lab.py) to
score world models against the lab environments' known laws.
"""

from __future__ import annotations

import numpy as np


def _as_rows(x) -> np.ndarray:
  x = np.asarray(x, np.float64)
  return x[:, None] if x.ndim == 1 else x


def _mean_distance(x: np.ndarray, y: np.ndarray) -> float:
  """E|X - Y| (Euclidean) over all pairs of rows of x [N, D] and y [M, D]."""
  total = 0.0
  for start in range(0, len(x), 512):  # bounded memory: [512, M, D]
    diff = x[start:start + 512, None, :] - y[None, :, :]
    total += np.sqrt((diff ** 2).sum(-1)).sum()
  return total / (len(x) * len(y))


def energy_distance(x, y) -> float:
  """sqrt(2 E|X - Y| - E|X - X'| - E|Y - Y'|) between sample sets.

  X, X' are drawn independently from the rows of x [N, D], Y, Y' from y
  [M, D] (all pairs, a V-statistic, as scipy.stats.energy_distance in one
  dimension). Zero iff the two empirical distributions are equal; unlike a
  distance between means it tells a bimodal law from a Gaussian of the
  same mean and variance.
  """
  x, y = _as_rows(x), _as_rows(y)
  value = (2 * _mean_distance(x, y) - _mean_distance(x, x) -
           _mean_distance(y, y))
  return float(np.sqrt(max(value, 0.0)))


def wasserstein_1d(x, y) -> float:
  """The 1-Wasserstein distance between two 1-D sample sets [N] and [M].

  The integral over u in (0, 1) of |F^-1(u) - G^-1(u)|, the empirical
  quantile functions being step functions: computed exactly on the merged
  breakpoints k / N and l / M.
  """
  x = np.sort(np.asarray(x, np.float64).ravel())
  y = np.sort(np.asarray(y, np.float64).ravel())
  breaks = np.union1d(np.arange(1, len(x) + 1) / len(x),
                      np.arange(1, len(y) + 1) / len(y))
  widths = np.diff(np.concatenate([[0.0], breaks]))
  mids = breaks - widths / 2
  qx = x[np.minimum((mids * len(x)).astype(int), len(x) - 1)]
  qy = y[np.minimum((mids * len(y)).astype(int), len(y) - 1)]
  return float(np.sum(widths * np.abs(qx - qy)))


def kde_nll(true_samples, imagined_samples, bandwidth: float) -> float:
  """Mean NLL of true samples [N, D] under a Gaussian KDE of imagined ones.

  The density is (1/M) sum_j Normal(x; imagined_j, bandwidth^2 I); the
  bandwidth is fixed, not fitted, so a model whose samples all coincide (a
  point estimate) still gets a finite, comparable NLL.
  """
  x, s = _as_rows(true_samples), _as_rows(imagined_samples)
  if bandwidth <= 0:
    raise ValueError(f'bandwidth must be > 0, got {bandwidth}.')
  d = x.shape[1]
  sq = ((x[:, None, :] - s[None, :, :]) ** 2).sum(-1) / bandwidth ** 2
  log_kernel = -0.5 * sq - 0.5 * d * np.log(2 * np.pi * bandwidth ** 2)
  peak = log_kernel.max(1, keepdims=True)
  log_density = (peak[:, 0] + np.log(np.exp(log_kernel - peak).sum(1)) -
                 np.log(len(s)))
  return float(-log_density.mean())


def _outcome_shares(true_samples, imagined_samples, radius: float):
  """(true share [K], imagined share within radius [K]) of the K values
  the true samples take."""
  true = np.asarray(true_samples, np.float64).ravel()
  imagined = np.asarray(imagined_samples, np.float64).ravel()
  if radius <= 0:
    raise ValueError(f'radius must be > 0, got {radius}.')
  outcomes, counts = np.unique(true, return_counts=True)
  gaps = np.abs(imagined[:, None] - outcomes[None, :])  # [M, K]
  nearest = gaps.argmin(1)
  near = gaps[np.arange(len(imagined)), nearest] <= radius
  imagined_share = np.bincount(nearest[near], minlength=len(outcomes))
  return counts / len(true), imagined_share / len(imagined)


def mass_on_outcomes(true_samples, imagined_samples, radius: float) -> float:
  """Share of imagined 1-D samples [M] within `radius` of a value the true
  samples [N] take (a discrete law's outcomes, e.g. the die faces).

  1 when the model imagines only outcomes that happen; a single Gaussian
  fitted to two outcomes puts part of its mass between them, and a point
  estimate at their mean puts none on either.
  """
  _, imagined = _outcome_shares(true_samples, imagined_samples, radius)
  return float(imagined.sum())


def outcomes_covered(true_samples, imagined_samples, radius: float,
                     share: float = 0.5) -> float:
  """Fraction of the true outcomes that the model imagines often enough.

  Each imagined sample [M] within `radius` of an outcome counts for its
  nearest one; an outcome is covered when its imagined share is at least
  `share` times its true share (in the true samples [N]). 1 means every
  mode is imagined, separately: a model that separates a bimodal law's
  modes covers both, a point estimate between them neither.
  """
  truth, imagined = _outcome_shares(true_samples, imagined_samples, radius)
  return float(np.mean(imagined >= share * truth))


def mean_absolute_error(estimates, truths) -> float:
  """mean |estimate - truth| over matching entries (e.g. imagined returns
  against true expected returns, one per start state)."""
  estimates = np.asarray(estimates, np.float64)
  truths = np.asarray(truths, np.float64)
  if estimates.shape != truths.shape:
    raise ValueError(f'shapes differ: {estimates.shape} and {truths.shape}.')
  return float(np.abs(estimates - truths).mean())


def auroc(positive_scores, negative_scores) -> float:
  """P(score of a positive > score of a negative), ties counting 1/2.

  The area under the ROC curve of the score as a detector of positives
  (e.g. held-out states) among negatives (training states): 0.5 is chance,
  1 a perfect separation. Computed from ranks (Mann-Whitney U / (N M)).
  """
  pos = np.asarray(positive_scores, np.float64).ravel()
  neg = np.asarray(negative_scores, np.float64).ravel()
  if not len(pos) or not len(neg):
    raise ValueError('auroc needs at least one score of each kind.')
  scores = np.concatenate([pos, neg])
  order = np.argsort(scores, kind='mergesort')
  ranks = np.empty(len(scores))
  sorted_scores = scores[order]
  # Tied scores share the mean of their ranks.
  starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
  ends = np.r_[starts[1:], len(scores)]
  for start, end in zip(starts, ends):
    ranks[order[start:end]] = 0.5 * (start + end - 1) + 1
  u = ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2
  return float(u / (len(pos) * len(neg)))
