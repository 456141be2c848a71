"""Tests for benchmarks/learning_curves.py on hand-made evaluation series.

The references are worked out by hand or with NumPy from the series.
"""

import numpy as np
import pytest

from benchmarks.learning_curves import (held, spread_across_seeds,
                                        steps_to_threshold, summarize)


def _rows(returns, every=1000):
  return [{'env_steps': float(every * (i + 1)), 'eval/return': float(r)}
          for i, r in enumerate(returns)]


# Evaluations at 1k .. 10k env steps.
HELD = _rows([20, 200, 480, 500, 500, 500, 490, 500, 500, 500])
FELL_BACK = _rows([20, 475, 300, 200, 480, 100, 100, 100, 100, 100])
NEVER = _rows([20, 100, 300, 400, 470, 474.9, 300, 200, 100, 50])
LATE = _rows([20, 30, 40, 50, 60, 70, 80, 90, 100, 475])


def test_first_step_at_the_threshold():
  assert steps_to_threshold(HELD, 475) == 3000
  assert steps_to_threshold(FELL_BACK, 475) == 2000  # equal counts
  assert steps_to_threshold(NEVER, 475) is None
  assert steps_to_threshold(LATE, 475) == 10000
  # Pendulum's threshold is negative: at or above -200.
  assert steps_to_threshold(_rows([-1200, -250, -200.0, -150]), -200) == 3000


def test_held_is_the_share_at_or_past_the_threshold_from_the_first_on():
  assert held(HELD, 475) == 1.0  # 3k .. 10k: all 8 at or past 475
  assert held(FELL_BACK, 475) == pytest.approx(2 / 9)  # 2k .. 10k: 2 of 9
  assert held(NEVER, 475) is None
  assert held(LATE, 475) == 1.0  # one evaluation, at the threshold
  assert held(_rows([-300, -190, -210, -199, -205]), -200) == pytest.approx(
      2 / 4)
  assert held(HELD, None) is None


def test_spread_across_seeds_matches_numpy_per_step():
  runs = {0: HELD, 1: FELL_BACK, 2: NEVER, 3: LATE}
  curve = spread_across_seeds(runs)
  table = np.array([[r['eval/return'] for r in rows]
                    for rows in runs.values()])  # [seeds, evaluations]
  assert curve['env_steps'] == [1000 * (i + 1) for i in range(10)]
  np.testing.assert_allclose(curve['median'], np.median(table, 0))
  np.testing.assert_allclose(curve['min'], table.min(0))
  np.testing.assert_allclose(curve['max'], table.max(0))
  np.testing.assert_allclose(curve['q25'], np.percentile(table, 25, 0))
  np.testing.assert_allclose(curve['q75'], np.percentile(table, 75, 0))
  assert curve['seeds'] == [4] * 10
  # By hand at 2k steps: returns 200, 475, 100, 30.
  assert curve['median'][1] == 150.0
  assert curve['q25'][1] == pytest.approx(30 + 0.75 * 70)


def test_spread_counts_only_the_seeds_that_evaluated_at_a_step():
  runs = {0: _rows([1, 2, 3]), 1: _rows([10, 20])}  # seed 1 stopped early
  curve = spread_across_seeds(runs)
  assert curve['seeds'] == [2, 2, 1]
  assert curve['median'] == [5.5, 11.0, 3.0]
  assert curve['min'][2] == curve['max'][2] == 3.0


def test_summarize_reports_first_steps_and_held_per_seed():
  runs = {0: HELD, 1: FELL_BACK, 2: NEVER, 3: LATE}
  out = summarize(runs, {'return': 475.0, 'env_steps': 5000})
  assert out['steps_to_target'] == {0: 3000, 1: 2000, 2: None, 3: 10000}
  # The median over 2000, 3000, 10000 and inf.
  assert out['steps_to_target_median'] == 6500.0
  assert out['seeds_reaching_target_within_budget'] == 2
  assert out['held'] == {0: 1.0, 1: pytest.approx(2 / 9), 2: None, 3: 1.0}
  assert out['held_median'] == 1.0  # of 1, 2/9 and 1
  assert out['seeds_held_80_percent'] == 2
  assert out['final_return_median'] == 287.5  # of 500, 100, 50, 475
  assert out['median_curve']['env_steps'][-1] == 10000
  empty = summarize({0: NEVER}, None)
  assert empty['held'] == {0: None} and empty['held_median'] is None
