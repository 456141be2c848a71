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


def brute_outcome_shares(true, imagined, radius):
  """Per outcome, the share of imagined samples nearest to it within
  radius: a Python loop over the samples."""
  outcomes = sorted(set(true))
  counts = dict.fromkeys(outcomes, 0)
  for value in imagined:
    nearest = min(outcomes, key=lambda o: abs(value - o))
    if abs(value - nearest) <= radius:
      counts[nearest] += 1
  return {o: counts[o] / len(imagined) for o in outcomes}


def test_mass_on_outcomes_matches_a_loop():
  rng = np.random.default_rng(7)
  true = rng.integers(1, 7, size=300).astype(float)
  imagined = rng.normal(3.5, 1.5, size=400)
  shares = brute_outcome_shares(true, imagined, 0.25)
  assert measures.mass_on_outcomes(true, imagined, 0.25) == pytest.approx(
      sum(shares.values()), rel=1e-12)
  # A Normal(3.5, 1.5) puts about P(|x - face| <= 0.25) on the faces.
  closed = sum(stats.norm.cdf(f + 0.25, 3.5, 1.5) -
               stats.norm.cdf(f - 0.25, 3.5, 1.5) for f in range(1, 7))
  assert measures.mass_on_outcomes(true, imagined, 0.25) == pytest.approx(
      closed, abs=0.07)


def test_separated_modes_are_covered_and_a_point_between_them_is_not():
  rng = np.random.default_rng(8)
  true = rng.choice([-0.25, 0.25], size=200)
  mixture = rng.choice([-0.25, 0.25], size=200) + rng.normal(0, 0.02, 200)
  point = np.full(200, 0.01)  # near the modes' mean, which never happens
  one_mode = np.full(200, 0.25)
  merged = rng.normal(0.0, 0.3, size=200)  # one Gaussian over both
  assert measures.mass_on_outcomes(true, mixture, 0.125) == 1.0
  assert measures.outcomes_covered(true, mixture, 0.125) == 1.0
  assert measures.mass_on_outcomes(true, point, 0.125) == 0.0
  assert measures.outcomes_covered(true, point, 0.125) == 0.0
  assert measures.mass_on_outcomes(true, one_mode, 0.125) == 1.0
  assert measures.outcomes_covered(true, one_mode, 0.125) == 0.5
  assert 0.2 < measures.mass_on_outcomes(true, merged, 0.125) < 0.6
  shares = brute_outcome_shares(true, merged, 0.125)
  truth = {o: np.mean(true == o) for o in shares}
  assert measures.outcomes_covered(true, merged, 0.125) == np.mean(
      [shares[o] >= 0.5 * truth[o] for o in shares])
  with pytest.raises(ValueError, match='radius'):
    measures.mass_on_outcomes(true, mixture, 0.0)
