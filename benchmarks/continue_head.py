r"""How sharp a world model's continue head gets on a run's own data.

  python -m benchmarks.continue_head --logdir=RUN --updates=1500
  python -m benchmarks.continue_head --logdir=RUN --updates=1500 \
      --set=world_model.loss_scales.continue=10 --standardize

Trains a fresh world model (the run's config.yaml plus --set) for --updates
world-model updates on the episodes stored in RUN/episodes (uniform windows
of replay.sequence_length, batch replay.batch_size), then reports the
continue probability it gives terminal and non-terminal steps. On CartPole
a step is terminal exactly when the pole angle passes 0.2095 rad, so a
good head gives terminal steps a probability near 0. With --standardize the
observations are first scaled to zero mean and unit std over the data (a
stand-in for observation normalisation). Prints one JSON line.
"""

import glob
import json
import os

from absl import app, flags

flags.DEFINE_string('logdir', None, 'A run directory of launch.train.')
flags.DEFINE_integer('updates', 1500, 'World-model updates.')
flags.DEFINE_multi_string('set', [], 'Config overrides (key.path=value).')
flags.DEFINE_bool('standardize', False, 'Standardise the observations.')
flags.DEFINE_integer('seed', 0, 'Seed of the windows and the model.')
flags.mark_flag_as_required('logdir')
FLAGS = flags.FLAGS


def load_steps(logdir: str):
  """Every stored step of the run, episodes concatenated: {key: [N, ...]}."""
  import numpy as np
  paths = sorted(glob.glob(os.path.join(logdir, 'episodes', '*.npz')))
  if not paths:
    raise app.UsageError(f'{logdir}/episodes holds no episode files.')
  episodes = [dict(np.load(path)) for path in paths]
  return {key: np.concatenate([e[key] for e in episodes])
          for key in episodes[0]}


def main(argv):
  del argv
  import numpy as np
  import tensorflow as tf
  from wm_tf.agent.builder import build_agent
  from wm_tf.config import load_config
  from wm_tf.runtime.environments import inspect_env

  config = load_config(os.path.join(FLAGS.logdir, 'config.yaml'),
                       list(FLAGS.set) + [f'seed={FLAGS.seed}'])
  agent = build_agent(config, inspect_env(config.env.id,
                                          config.env.max_episode_steps))
  steps = load_steps(FLAGS.logdir)
  observation = steps['observation'].astype(np.float32)
  if FLAGS.standardize:
    observation = ((observation - observation.mean(0)) /
                   (observation.std(0) + 1e-3)).astype(np.float32)
  steps['observation'] = observation
  length, size = config.replay.sequence_length, config.replay.batch_size
  rng = np.random.default_rng(FLAGS.seed)
  # Windows may cross episode boundaries; is_first marks them, as in replay.
  last_start = len(observation) - length

  def batch():
    rows = rng.integers(0, last_start, size)[:, None] + np.arange(length)
    return {key: tf.constant(value[rows]) for key, value in steps.items()}

  for _ in range(FLAGS.updates):
    metrics = agent.learner.train_world_model(batch())
  model = agent.world_model
  continues = model.continue_(model.encode(
      {'observation': tf.constant(observation)})).mean()
  continues = continues.numpy()
  terminal = steps['is_terminal'].astype(bool)
  print(json.dumps({
      'logdir': FLAGS.logdir, 'updates': FLAGS.updates,
      'overrides': FLAGS.set, 'standardize': FLAGS.standardize,
      'steps': int(len(terminal)), 'terminal_steps': int(terminal.sum()),
      'continue_at_terminal_median': round(float(np.median(
          continues[terminal])), 4),
      'continue_at_terminal_mean': round(float(continues[terminal].mean()), 4),
      'continue_at_nonterminal_median': round(float(np.median(
          continues[~terminal])), 4),
      'continue_nll_last_batch': round(float(
          metrics['world_model/continue_nll']), 4),
  }))


if __name__ == '__main__':
  app.run(main)
