"""wm_tf.lab.measures against scipy and brute-force references."""

import itertools

import numpy as np
import pytest
from scipy import stats

from wm_tf.lab import measures


def brute_energy(x, y):
  x, y = np.atleast_2d(x.T).T, np.atleast_2d(y.T).T
  mean = lambda a, b: np.mean([np.linalg.norm(p - q) for p in a for q in b])
  return np.sqrt(2 * mean(x, y) - mean(x, x) - mean(y, y))


def test_energy_distance_matches_scipy_in_one_dimension():
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=300), rng.normal(0.5, 2.0, size=200)
  assert measures.energy_distance(x, y) == pytest.approx(
      stats.energy_distance(x, y), rel=1e-9)


def test_energy_distance_matches_brute_force_in_three_dimensions():
  rng = np.random.default_rng(1)
  x, y = rng.normal(size=(40, 3)), rng.uniform(size=(30, 3))
  assert measures.energy_distance(x, y) == pytest.approx(
      brute_energy(x, y), rel=1e-9)
  assert measures.energy_distance(x, x) == pytest.approx(0.0, abs=1e-9)


def test_energy_distance_tells_a_bimodal_law_from_its_moment_matched_gaussian():
  rng = np.random.default_rng(2)
  bimodal = rng.choice([-1.0, 1.0], size=2000)
  other_bimodal = rng.choice([-1.0, 1.0], size=2000)
  gaussian = rng.normal(0.0, 1.0, size=2000)  # same mean and variance
  assert (measures.energy_distance(gaussian, bimodal) >
          5 * measures.energy_distance(other_bimodal, bimodal))


@pytest.mark.parametrize('n, m', [(50, 50), (37, 91), (1, 10)])
def test_wasserstein_matches_scipy(n, m):
  rng = np.random.default_rng(n + m)
  x, y = rng.exponential(size=n), rng.normal(size=m)
  assert measures.wasserstein_1d(x, y) == pytest.approx(
      stats.wasserstein_distance(x, y), rel=1e-9)


def test_wasserstein_of_a_shift_is_the_shift():
  x = np.random.default_rng(3).normal(size=100)
  assert measures.wasserstein_1d(x, x + 0.7) == pytest.approx(0.7)


def test_kde_nll_matches_scipy_normal_densities():
  rng = np.random.default_rng(4)
  true, imagined, h = rng.normal(size=(20, 2)), rng.normal(size=(15, 2)), 0.3
  density = np.array([np.mean([stats.multivariate_normal(s, h * h).pdf(t)
                               for s in imagined]) for t in true])
  assert measures.kde_nll(true, imagined, h) == pytest.approx(
      -np.log(density).mean(), rel=1e-9)


def test_kde_nll_prefers_samples_of_the_true_law():
  rng = np.random.default_rng(5)
  true = rng.choice([-1.0, 1.0], size=500)
  right = rng.choice([-1.0, 1.0], size=500)
  merged = np.zeros(500)  # a point estimate at the mean
  assert (measures.kde_nll(true, right, 0.1) <
          measures.kde_nll(true, merged, 0.1) - 10)


def test_mean_absolute_error():
  assert measures.mean_absolute_error([1, 2, 4], [1, 0, 5]) == pytest.approx(1)
  with pytest.raises(ValueError, match='shapes differ'):
    measures.mean_absolute_error([1, 2], [1])


def brute_auroc(pos, neg):
  wins = [1.0 if p > q else 0.5 if p == q else 0.0
          for p, q in itertools.product(pos, neg)]
  return np.mean(wins)


def test_auroc_matches_brute_force_and_mann_whitney_with_ties():
  rng = np.random.default_rng(6)
  pos = rng.integers(0, 5, size=40).astype(float)  # many ties
  neg = rng.integers(0, 4, size=30).astype(float)
  value = measures.auroc(pos, neg)
  assert value == pytest.approx(brute_auroc(pos, neg))
  u = stats.mannwhitneyu(pos, neg).statistic
  assert value == pytest.approx(u / (len(pos) * len(neg)))
  assert measures.auroc([2.0, 3.0], [0.0, 1.0]) == 1.0
  assert measures.auroc([0.0], [1.0]) == 0.0
