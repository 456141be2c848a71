r"""Sample efficiency: eval return against env steps, K seeds per environment.

  python -m benchmarks.sample_efficiency --envs=cartpole,pendulum --seeds=5

Each (environment, seed) is one `launch.train` run in a subprocess (so a
crash or a slow seed cannot take the others down); `--parallel` of them run
at once. Eval return is the mean of `run.eval_episodes` (10) episodes with
the deterministic policy. Writes, under --output:
  sample_efficiency.csv        env, seed, env_steps, eval_return,
                               wall_seconds, and the seed's
                               first_step_at_threshold and held
  sample_efficiency.json       per env: median final return, steps to the
                               target per seed and their median, "held" per
                               seed and its median, the median curve with
                               its spread across seeds, wall-clock
  sample_efficiency_<env>.png  per-seed curves, their median with the
                               min-max and interquartile bands, the target

Stable learning (`benchmarks.learning_curves`): the first env step at the
threshold (CartPole 475, Pendulum -200; null if never), and "held", the
share of the evaluations from that one on that are at or past the
threshold (1.0: it never fell back; null if never reached).
"""

import csv
import json
import os

from absl import app, flags

from benchmarks.learning_curves import (held, spread_across_seeds,
                                       steps_to_threshold, summarize)
from benchmarks.training_runs import (ROOT, median, read_evaluations,
                                      run_jobs, threads_per_run,
                                      train_command)

flags.DEFINE_list('envs', ['cartpole', 'pendulum'], 'Configs under configs/.')
flags.DEFINE_integer('seeds', 5, 'Seeds per environment (first_seed ..'
                     ' first_seed + seeds - 1).')
flags.DEFINE_integer('first_seed', 0, 'The first seed: results are checked '
                     'again on seeds never used in development (e.g. 100).')
flags.DEFINE_integer('parallel', 1, 'Runs at once.')
flags.DEFINE_integer('threads', None, "TensorFlow's intra- and inter-op "
                     'threads per run (default: the cores / --parallel, at '
                     'least 1).')
flags.DEFINE_string('output', 'benchmarks/results', 'Output directory.')
flags.DEFINE_multi_string('set', [], 'Extra key=value overrides for all runs.')
FLAGS = flags.FLAGS

# The targets: eval return reached within this many env steps.
TARGETS = {
    'cartpole': {'return': 475.0, 'env_steps': 10_000},
    'pendulum': {'return': -200.0, 'env_steps': 15_000},
}


def plot(env, runs, target, path):
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(6, 4))
  threshold = target['return'] if target else None
  for seed, rows in sorted(runs.items()):
    first, kept = steps_to_threshold(rows, threshold), held(rows, threshold)
    label = f'seed {seed}' + ('' if first is None else
                              f': first {first}, held {kept:.0%}')
    ax.plot([r['env_steps'] for r in rows], [r['eval/return'] for r in rows],
            alpha=0.4, label=label)
  curve = spread_across_seeds(runs)
  steps = curve['env_steps']
  ax.fill_between(steps, curve['min'], curve['max'], color='black',
                  alpha=0.08, label='min-max over seeds')
  ax.fill_between(steps, curve['q25'], curve['q75'], color='black',
                  alpha=0.2, label='interquartile range')
  ax.plot(steps, curve['median'], color='black', linewidth=2, label='median')
  if target:
    ax.axhline(target['return'], color='red', linestyle='--', label='target')
    ax.axvline(target['env_steps'], color='red', linestyle=':')
  ax.set_xlabel('env steps')
  ax.set_ylabel('eval return (10 episodes, deterministic)')
  ax.set_title(env)
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def main(argv):
  del argv
  os.makedirs(FLAGS.output, exist_ok=True)
  jobs, logdirs = [], {}
  seeds = range(FLAGS.first_seed, FLAGS.first_seed + FLAGS.seeds)
  threads = threads_per_run(FLAGS.parallel, FLAGS.threads)
  for env in FLAGS.envs:
    for seed in seeds:
      logdir = os.path.join(FLAGS.output, 'runs', f'{env}-seed{seed}')
      logdirs[(env, seed)] = logdir
      jobs.append({'env': env, 'seed': seed, 'logdir': logdir,
                   'name': f'{env} seed {seed}',
                   'cmd': train_command(
                       os.path.join(ROOT, 'configs', env + '.yaml'), logdir,
                       seed, FLAGS.set, threads)})
  run_jobs(jobs, FLAGS.parallel)
  wall = {(job['env'], job['seed']): job['wall_seconds'] for job in jobs}

  rows_out, summary = [], {}
  for env in FLAGS.envs:
    runs = {}
    for seed in seeds:
      path = os.path.join(logdirs[(env, seed)], 'evaluations.csv')
      if os.path.exists(path):
        runs[seed] = read_evaluations(path)
        for r in runs[seed]:
          rows_out.append({'env': env, 'seed': seed,
                           'env_steps': int(r['env_steps']),
                           'eval_return': r['eval/return'],
                           'wall_seconds': r['wall_seconds']})
    target = TARGETS.get(env)
    summary[env] = dict(summarize(runs, target),
                        wall_seconds={s: wall[(env, s)] for s in runs},
                        wall_seconds_median=median([wall[(env, s)]
                                                    for s in runs]))
    for row in rows_out:
      if row['env'] == env:
        row['first_step_at_threshold'] = (
            summary[env]['steps_to_target'][row['seed']])
        row['held'] = summary[env]['held'][row['seed']]
    if runs:
      plot(env, runs, target,
           os.path.join(FLAGS.output, f'sample_efficiency_{env}.png'))
  with open(os.path.join(FLAGS.output, 'sample_efficiency.csv'), 'w') as f:
    writer = csv.DictWriter(f, ['env', 'seed', 'env_steps', 'eval_return',
                                'wall_seconds', 'first_step_at_threshold',
                                'held'])
    writer.writeheader()
    writer.writerows(rows_out)
  with open(os.path.join(FLAGS.output, 'sample_efficiency.json'), 'w') as f:
    json.dump(summary, f, indent=2, default=str)
  print(json.dumps(summary, indent=2, default=str))


if __name__ == '__main__':
  app.run(main)
