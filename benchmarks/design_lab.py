r"""The design lab: each claim of the design, measured on the env it is about.

  python -m benchmarks.design_lab                 # default budget (< 90 min)
  python -m benchmarks.design_lab --quick         # 1 seed, short runs
  python -m benchmarks.design_lab --only=mixture_bounce,ensemble_ood

For every claim of `benchmarks.design_claims.CLAIMS` the baseline and the
alternative (overrides of benchmarks/design_lab.yaml) are trained on the
claim's lab environment (wm_tf/lab) for --seeds seeds; runs shared by several claims
are made once. Each run is `python -m benchmarks.design_lab --worker=JOB`
in a subprocess (--parallel at once): a `Trainer` trains the agent, then
`wm_tf.lab.probes` measures its world model against the environment's true
law: the energy distance, KDE NLL and 1-D Wasserstein distance between
imagined and true next observations at the env's probe states, the error of
the imagined H-step return against the true expected one (Monte Carlo in
the real env under the same actor), the critic's error against the
actor's true return (value_error), for the OOD probe the AUROC of the
dynamics' uncertainty separating held-out from covered states, and the
final eval return.

Verdict rule, on the claim's measure: the difference of the alternative
and the baseline is measurable when the ranges of their seeds' values do
not overlap and the gap between the means exceeds --tolerance times the
larger of the two means' magnitudes (and 1e-3). A claim that the
alternative is better (or worse) is then confirmed or refuted by its sign,
else 'no measurable difference'; a claim that it is no worse is refuted
only by a measurable loss, and a claim that it is the same by any
measurable difference. An eval-return claim whose runs all returned the
same value (none learned, or all reached the best return) is
'inconclusive'. With one seed (--quick) a range is one value, so only the
tolerance guards against noise.

Writes <output>/<name>.json (runs, per-seed values, verdicts), .csv (one
row per claim) and _next_state.png (true against imagined next-state
histograms on Dice and Bounce), and prints the markdown table and a
table of how much of each Dice and Bounce model's imagined next state lands
on the true outcomes.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from typing import Dict, List, Sequence

from absl import app, flags

from benchmarks import design_claims, design_report
from benchmarks.training_runs import ROOT, run_jobs, threads_per_run

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command's flags (defined on run, not on import: tests import this
  module beside other benchmarks that define flags of the same names)."""
  flags.DEFINE_bool('quick', False, 'Reduced run: 1 seed and the short '
                    'budgets (LAB_ENVS quick steps).')
  flags.DEFINE_integer('seeds', None, 'Seeds per configuration (default 3, '
                       '1 with --quick).')
  flags.DEFINE_float('budget_scale', 1.0, 'Multiplies every env budget.')
  flags.DEFINE_list('only', [], 'Claims to run (names; default all).')
  flags.DEFINE_integer('parallel', 2, 'Runs at once.')
  flags.DEFINE_integer('threads', None, "TensorFlow's intra- and inter-op "
                       'threads per run (default: the cores / --parallel, '
                       'at least 1).')
  flags.DEFINE_float('tolerance', 0.05, 'Relative gap a difference must '
                     'exceed (see the verdict rule).')
  flags.DEFINE_string('output', 'benchmarks/results', 'Output directory.')
  flags.DEFINE_string('runs', '/tmp/design_lab', 'Where the runs live.')
  flags.DEFINE_string('name', None, "Output file stem (default 'design_lab', "
                      "'design_lab_quick' with --quick).")
  flags.DEFINE_integer('samples', 200, 'True and imagined next states per '
                       'probe state.')
  flags.DEFINE_multi_string('set', [], 'Extra key=value overrides for every '
                            'run (before the claim\'s own).')
  flags.DEFINE_string('worker', None, 'Internal: run this job JSON file.')


CONFIG = os.path.join(ROOT, 'benchmarks', 'design_lab.yaml')

# name -> env id, default and quick env steps, extra overrides. Runs are
# made in this order of their envs (seed-major), so a lab stopped early has
# the stochastic envs' claims first.
LAB_ENVS = {
    'dice': ('wm_tf/Dice-v0', 4000, 2500, ()),
    'bounce': ('wm_tf/Bounce-v0', 4000, 2500, ()),
    'ood': ('wm_tf/OODProbe-v0', 3000, 2000,
            ('actor.gradient=dynamics',)),
    'corridor_short': ('wm_tf/Corridor-short-v0', 4000, 2500, ()),
    'corridor_long': ('wm_tf/Corridor-long-v0', 4000, 3000, ()),
    'grid': ('wm_tf/GridWorld-v0', 7000, 5000, ()),
}


def run_overrides(env: str, overrides, steps: int, seed: int,
                  extra: Sequence[str] = ()) -> List[str]:
  env_id, _, _, env_overrides = LAB_ENVS[env]
  return ([f'env.id={env_id}', f'run.total_env_steps={steps}',
           f'seed={seed}'] + list(env_overrides) + list(extra) +
          list(overrides))


def run_key(env: str, overrides) -> str:
  """A run's directory name: the env and its sorted overrides."""
  parts = sorted(o.replace('=', '-').replace('.', '_') for o in overrides)
  return '__'.join([env] + parts) if parts else env + '__baseline'


def plan_runs(claims, seeds: int, steps_of, extra: Sequence[str] = ()
              ) -> Dict[str, Dict]:
  """The distinct runs the claims need: run id -> job."""
  jobs = {}
  for claim in claims:
    if not claim.runs:
      continue
    for overrides in (claim.baseline, claim.alternative):
      for seed in range(seeds):
        key = f'{run_key(claim.env, overrides)}/seed{seed}'
        steps = steps_of(claim.env)
        jobs[key] = {'env': claim.env, 'seed': seed, 'steps': steps,
                     'overrides': run_overrides(claim.env, overrides, steps,
                                                seed, extra)}
  return jobs


def run_worker(path: str) -> None:
  """Trains one job's agent and measures it; writes result.json beside it."""
  started = time.time()
  with open(path) as f:
    job = json.load(f)
  from wm_tf.runtime.distribution import limit_threads
  # Runs share the cores: each gets its share of threads, not a pool per
  # core that the other runs also claim.
  limit_threads(job['threads'])
  from benchmarks import design_probe
  result = design_probe.train_and_measure(
      CONFIG, job['overrides'], job['env'], job['logdir'], job['samples'])
  result['wall_seconds'] = time.time() - started
  usage = resource.getrusage(resource.RUSAGE_SELF)
  # CPU seconds of the worker: the budget's measure on a shared machine.
  result['cpu_seconds'] = usage.ru_utime + usage.ru_stime
  with open(os.path.join(job['logdir'], 'result.json'), 'w') as f:
    json.dump(result, f, indent=1)


def execute(jobs: Dict[str, Dict], runs_dir: str, parallel: int,
            samples: int, threads: int) -> Dict[str, Dict]:
  """Runs the jobs without a result.json; returns run id -> result."""
  pending = []
  for key, job in jobs.items():
    logdir = os.path.join(runs_dir, f'{job["steps"]}', key)
    job['logdir'] = logdir
    if os.path.exists(os.path.join(logdir, 'result.json')):
      continue
    os.makedirs(logdir, exist_ok=True)
    spec = dict(job, samples=samples, threads=threads)
    with open(logdir + '.job.json', 'w') as f:
      json.dump(spec, f)
    pending.append({'name': key, 'logdir': logdir,
                    'cmd': [sys.executable, '-m', 'benchmarks.design_lab',
                            f'--worker={logdir}.job.json']})
  order = list(LAB_ENVS)
  pending.sort(key=lambda p: (jobs[p['name']]['seed'],
                              order.index(jobs[p['name']]['env'])))
  print(f'{len(jobs)} runs, {len(pending)} to make', flush=True)
  run_jobs(pending, parallel)
  results = {}
  for key, job in jobs.items():
    path = os.path.join(job['logdir'], 'result.json')
    if os.path.exists(path):
      with open(path) as f:
        results[key] = json.load(f)
  return results


def main(argv):
  del argv
  if FLAGS.worker:
    run_worker(FLAGS.worker)
    return
  seeds = FLAGS.seeds or (1 if FLAGS.quick else 3)
  claims = [c for c in design_claims.CLAIMS
            if not FLAGS.only or c.name in FLAGS.only]
  unknown = set(FLAGS.only) - {c.name for c in design_claims.CLAIMS}
  if unknown:
    raise app.UsageError(f'--only names unknown claims: {sorted(unknown)}; '
                         'allowed: the names in benchmarks/design_claims.py')

  def steps_of(env):
    _, full, quick, _ = LAB_ENVS[env]
    return int((quick if FLAGS.quick else full) * FLAGS.budget_scale)

  jobs = plan_runs(claims, seeds, steps_of, FLAGS.set)
  start = time.time()
  threads = threads_per_run(FLAGS.parallel, FLAGS.threads)
  results = execute(jobs, FLAGS.runs, FLAGS.parallel, FLAGS.samples,
                    threads)
  name = FLAGS.name or ('design_lab_quick' if FLAGS.quick else 'design_lab')
  command = 'python -m benchmarks.design_lab' + (
      ' --quick' if FLAGS.quick else '')
  report = design_report.build_report(
      claims, jobs, results, seeds, FLAGS.tolerance, run_key,
      {'command': command, 'seeds': seeds, 'quick': FLAGS.quick,
       'budgets': {e: steps_of(e) for e in LAB_ENVS},
       'parallel': FLAGS.parallel, 'threads': threads,
       'wall_seconds': time.time() - start})
  design_report.write(report, FLAGS.output, name)
  print(design_report.markdown_table(report))
  print()
  print(design_report.modes_table(report))


if __name__ == '__main__':
  define_flags()
  app.run(main)
