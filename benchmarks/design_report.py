"""The design lab's verdicts, tables and plots from its runs' results."""

from __future__ import annotations

import csv
import json
import os
from typing import Dict, List, Optional, Sequence

import numpy as np

from benchmarks.design_claims import (BETTER, MEASURES, NO_WORSE, SAME,
                                      WORSE)
from wm_tf.lab import measures

# The last two are computed here from a run's plotted samples (Dice and
# Bounce: `outcome_measures`), the others by the run itself.
MEASURE_NAMES = ('eval_return', 'energy', 'energy_floor', 'nll',
                 'wasserstein', 'return_error', 'value_error', 'auroc',
                 'on_outcomes', 'outcomes_covered')


def difference(alternative: Sequence[float], baseline: Sequence[float],
               larger_is_better: bool, tolerance: float) -> int:
  """+1: the alternative is measurably better, -1 worse, 0 neither.

  Measurable: the seeds' ranges [min, max] do not overlap and the means'
  gap exceeds tolerance * max(|mean|, 1e-3) of the two means.
  """
  a, b = np.asarray(alternative, float), np.asarray(baseline, float)
  if not len(a) or not len(b):
    return 0
  gap = a.mean() - b.mean()
  scale = max(abs(a.mean()), abs(b.mean()), 1e-3)
  overlap = a.min() <= b.max() and b.min() <= a.max()
  if overlap or abs(gap) <= tolerance * scale:
    return 0
  return int(np.sign(gap)) * (1 if larger_is_better else -1)


def verdict(predicts: str, sign: int) -> str:
  """'confirmed', 'refuted' or 'no measurable difference'."""
  if predicts in (BETTER, WORSE):
    if sign == 0:
      return 'no measurable difference'
    wanted = 1 if predicts == BETTER else -1
    return 'confirmed' if sign == wanted else 'refuted'
  if predicts == NO_WORSE:
    return 'refuted' if sign < 0 else (
        'confirmed' if sign > 0 else 'confirmed (no measurable difference)')
  if predicts == SAME:
    return ('confirmed (no measurable difference)' if sign == 0 else
            'refuted')
  raise ValueError(f'unknown prediction {predicts!r}')


def _values(results: Dict[str, Dict], key: str, seeds: int,
            measure: str) -> List[float]:
  values = []
  for seed in range(seeds):
    result = results.get(f'{key}/seed{seed}')
    if result is not None and result.get(measure) is not None:
      values.append(float(result[measure]))
  return values


def claim_row(claim, results, seeds: int, tolerance: float, run_key) -> Dict:
  """One claim's values per seed, means and verdict."""
  row = {'name': claim.name, 'decision': claim.decision, 'claim': claim.text,
         'where': claim.where, 'env': claim.env,
         'baseline': list(claim.baseline),
         'alternative': list(claim.alternative), 'measure': claim.measure,
         'predicts': claim.predicts}
  if not claim.runs:
    row['verdict'] = claim.why_not
    return row
  keys = {'baseline': run_key(claim.env, claim.baseline),
          'alternative': run_key(claim.env, claim.alternative)}
  for side, key in keys.items():
    row[side + '_values'] = {
        m: _values(results, key, seeds, m) for m in MEASURE_NAMES}
  a = row['alternative_values'][claim.measure]
  b = row['baseline_values'][claim.measure]
  if not a or not b:
    row['verdict'] = 'not measured: runs missing or failed'
    return row
  sign = difference(a, b, MEASURES[claim.measure], tolerance)
  row.update(alternative_mean=float(np.mean(a)), baseline_mean=float(np.mean(b)),
             sign=sign, verdict=verdict(claim.predicts, sign))
  if claim.measure == 'eval_return' and len(set(a + b)) == 1:
    # Every run at one value: neither learned, or both reached the best
    # return; "no difference" would then be no evidence either way.
    row['verdict'] = f'inconclusive: every run returned {a[0]:.3g}'
  return row


def outcome_measures(histogram: Dict) -> Dict[str, float]:
  """Whether the imagined samples of one coordinate land on the true
  outcomes (Dice: the faces after a roll; Bounce: x = +-0.25 after the peg):
  `on_outcomes`, the imagined share within a quarter of the outcomes'
  smallest gap of one of them, and `outcomes_covered`, the share of
  outcomes imagined at least half as often as they happen
  (`wm_tf.lab.measures`). {} without samples."""
  if not histogram:
    return {}
  true, imagined = histogram['true'], histogram['imagined']
  outcomes = np.unique(true)
  radius = np.diff(outcomes).min() / 4 if len(outcomes) > 1 else 0.25
  return {'on_outcomes': measures.mass_on_outcomes(true, imagined, radius),
          'outcomes_covered': measures.outcomes_covered(true, imagined,
                                                        radius)}


def build_report(claims, jobs, results, seeds, tolerance, run_key,
                 info: Dict) -> Dict:
  results = {k: dict(r, **outcome_measures(r.get('histogram')))
             if r is not None else None for k, r in results.items()}
  return {'info': dict(info, tolerance=tolerance),
          'claims': [claim_row(c, results, seeds, tolerance, run_key)
                     for c in claims],
          'runs': {k: dict(jobs[k], result=results.get(k)) for k in jobs}}


def _fmt(values: Optional[List[float]]) -> str:
  if not values:
    return '–'
  return ' / '.join(f'{v:.3g}' for v in values)


def _change(overrides) -> str:
  return ', '.join(overrides) if overrides else 'benchmarks/design_lab.yaml'


def markdown_table(report: Dict) -> str:
  lines = ['| --only= | decision | claim (DESIGN.md) | where | env | '
           'baseline | alternative | measure | baseline (per seed) | '
           'alternative (per seed) | eval return base / alt | verdict |',
           '| --- ' * 12 + '|']
  for row in report['claims']:
    claim = (f'| {row["name"]} | {row["decision"]} | {row["claim"]} | '
             f'{row.get("where", "")} | ')
    if 'baseline_values' not in row:
      lines.append(claim + '– | – | – | – | – | – | – | '
                   f'{row["verdict"]} |')
      continue
    m = row['measure']
    b, a = row['baseline_values'], row['alternative_values']
    lines.append(
        claim + f'{row["env"]} | '
        f'{_change(row["baseline"])} | {_change(row["alternative"])} | {m} | '
        f'{_fmt(b[m])} | {_fmt(a[m])} | {_fmt(b["eval_return"])} / '
        f'{_fmt(a["eval_return"])} | {row["verdict"]} |')
  return '\n'.join(lines)


def modes_table(report: Dict) -> str:
  """Markdown: per Dice and Bounce configuration, the imagined next
  state's mass on the true outcomes and the outcomes it covers, per seed
  (see `outcome_measures`), beside its energy distance."""
  groups: Dict[str, Dict[str, List[float]]] = {}
  for key, run in sorted(report['runs'].items()):
    result = run.get('result') or {}
    if 'on_outcomes' not in result:
      continue
    config = key.rsplit('/', 1)[0]
    group = groups.setdefault(config, {m: [] for m in
                                       ('on_outcomes', 'outcomes_covered',
                                        'energy', 'eval_return')})
    for m in group:
      group[m].append(result[m])
  lines = ['| env / configuration | mass on true outcomes (per seed) | '
           'outcomes covered | energy | eval return |',
           '| --- ' * 5 + '|']
  for config, group in groups.items():
    env, change = config.split('__', 1)
    lines.append(f'| {env} / {change} | {_fmt(group["on_outcomes"])} | '
                 f'{_fmt(group["outcomes_covered"])} | '
                 f'{_fmt(group["energy"])} | {_fmt(group["eval_return"])} |')
  return '\n'.join(lines)


def write_csv(report: Dict, path: str) -> None:
  fields = ['name', 'decision', 'claim', 'where', 'env', 'baseline',
            'alternative', 'measure', 'predicts', 'baseline_mean',
            'alternative_mean', 'verdict']
  with open(path, 'w', newline='') as f:
    writer = csv.DictWriter(f, fields, extrasaction='ignore')
    writer.writeheader()
    for row in report['claims']:
      writer.writerow({**row, 'baseline': ' '.join(row['baseline']),
                       'alternative': ' '.join(row['alternative'])})


def plot_histograms(report: Dict, path: str) -> bool:
  """True against imagined next-state histograms, seed 0 of each dice and
  bounce run; False if there is nothing to plot."""
  panels = [(key, run['result']['histogram'])
            for key, run in sorted(report['runs'].items())
            if key.endswith('/seed0') and run.get('result')
            and run['result'].get('histogram')]
  if not panels:
    return False
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  cols = 3
  rows = -(-len(panels) // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows),
                           squeeze=False)
  for ax, (key, hist) in zip(axes.ravel(), panels):
    values = np.concatenate([hist['true'], hist['imagined']])
    bins = np.linspace(values.min() - 0.25, values.max() + 0.25, 41)
    ax.hist(hist['true'], bins, alpha=0.6, label='true')
    ax.hist(hist['imagined'], bins, alpha=0.6, label='imagined')
    ax.set_title(key.rsplit('/', 1)[0].replace('__', '\n'), fontsize=7)
    ax.legend(fontsize=7)
  for ax in axes.ravel()[len(panels):]:
    ax.axis('off')
  fig.suptitle('Next state after a roll from face 1 (dice: face) and at the '
               'peg (bounce: x)', fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)
  return True


def write(report: Dict, output: str, name: str) -> None:
  os.makedirs(output, exist_ok=True)
  stem = os.path.join(output, name)
  with open(stem + '.json', 'w') as f:
    json.dump(report, f, indent=1)
  write_csv(report, stem + '.csv')
  plot_histograms(report, stem + '_next_state.png')
  print(f'wrote {stem}.json, .csv, _next_state.png')
