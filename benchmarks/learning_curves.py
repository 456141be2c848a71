"""Stable learning as numbers: what a run's evaluations say about it.

Pure functions of evaluation series (lists of rows with 'env_steps' and
'eval/return', as `benchmarks.training_runs.read_evaluations` reads them),
no flags, so tests and every benchmark can import them:
  steps_to_threshold(rows, threshold): the first env step at or past it;
  held(rows, threshold): the share of evaluations at or past the threshold
    from that first one on (itself included);
  spread_across_seeds(runs): per env step, the median over seeds with the
    minimum, maximum and quartiles, for the plot's band;
  summarize(runs, target): all of it for one environment, as
    benchmarks/sample_efficiency.py reports it.
"""

from typing import Dict, List, Optional, Sequence

import numpy as np

from benchmarks.training_runs import median, steps_to_threshold

__all__ = ['held', 'spread_across_seeds', 'steps_to_threshold', 'summarize']

Rows = Sequence[Dict[str, float]]


def held(rows: Rows, threshold: Optional[float]) -> Optional[float]:
  """Share of the evaluations from the first at or past `threshold` on
  that are at or past it, in (0, 1]; None if none ever reached it.

  1.0 means learning held after it first reached the threshold; a run that
  reached it once and fell back for good has 1 / (evaluations left).
  """
  first = steps_to_threshold(rows, threshold)
  if first is None:
    return None
  after = [r['eval/return'] for r in rows if r['env_steps'] >= first]
  return float(np.mean(np.asarray(after) >= threshold))


def spread_across_seeds(runs: Dict[int, Rows]) -> Dict[str, List[float]]:
  """The curve over seeds: {'env_steps', 'median', 'min', 'max', 'q25',
  'q75', 'seeds'}, one entry per env step that any seed evaluated at.

  At each step only the seeds that evaluated there count ('seeds' says how
  many); quartiles interpolate linearly between the sorted returns, as
  numpy.percentile does.
  """
  steps = sorted({int(r['env_steps']) for rows in runs.values()
                  for r in rows})
  out = {k: [] for k in ('env_steps', 'median', 'min', 'max', 'q25', 'q75',
                         'seeds')}
  for step in steps:
    values = np.array([r['eval/return'] for rows in runs.values()
                       for r in rows if int(r['env_steps']) == step])
    out['env_steps'].append(step)
    out['median'].append(float(np.median(values)))
    out['min'].append(float(values.min()))
    out['max'].append(float(values.max()))
    out['q25'].append(float(np.percentile(values, 25)))
    out['q75'].append(float(np.percentile(values, 75)))
    out['seeds'].append(len(values))
  return out


def summarize(runs: Dict[int, Rows], target: Optional[Dict[str, float]]
              ) -> Dict[str, object]:
  """One environment's report from its seeds' evaluations.

  Args:
    runs: {seed: evaluation rows}, each seed with at least one row.
    target: {'return': threshold, 'env_steps': budget}, or None (then the
      threshold keys are None or empty).

  Returns:
    'seeds'; 'final_return_median'; 'best_return_within_budget_median';
    'steps_to_target' {seed: first env step at the threshold or None} and
    its median (a seed that never reached it counts as inf);
    'seeds_reaching_target_within_budget'; 'held' {seed: share or None},
    'held_median' (over the seeds that reached the threshold) and
    'seeds_held_80_percent'; 'median_curve' (`spread_across_seeds`);
    'target'.
  """
  threshold = target['return'] if target else None
  reached = {s: steps_to_threshold(rows, threshold) for s, rows in runs.items()}
  kept = {s: held(rows, threshold) for s, rows in runs.items()}
  within = [s for s, st in reached.items()
            if st is not None and st <= target['env_steps']] if target else []
  budget_returns = [
      max([r['eval/return'] for r in rows
           if r['env_steps'] <= target['env_steps']] or [float('nan')])
      for rows in runs.values()] if target else []
  return {
      'seeds': len(runs),
      'final_return_median': median([rows[-1]['eval/return']
                                     for rows in runs.values()]),
      'best_return_within_budget_median': median(budget_returns),
      'steps_to_target': reached,
      'steps_to_target_median': median(
          [st if st is not None else float('inf') for st in reached.values()]),
      'seeds_reaching_target_within_budget': len(within),
      'held': kept,
      'held_median': median([h for h in kept.values() if h is not None]),
      'seeds_held_80_percent': sum(1 for h in kept.values()
                                   if h is not None and h >= 0.8),
      'median_curve': spread_across_seeds(runs),
      'target': target,
  }
