r"""Trains a world-model agent.

  python -m launch.train --config=configs/cartpole.yaml --logdir=/tmp/run \
      --set actor.entropy=1e-3 --set run.total_env_steps=20000
"""

import sys

from absl import app, flags

flags.DEFINE_string('config', 'configs/cartpole.yaml', 'YAML config file.')
flags.DEFINE_string('logdir', None, 'Run directory (TensorBoard, checkpoints).')
flags.DEFINE_integer('seed', None, 'Overrides the config key seed.')
flags.DEFINE_multi_string('set', [], 'Override: key.path=value (repeatable).')
flags.DEFINE_bool('jit', None, 'Compile with XLA (overrides run.jit).')
flags.DEFINE_bool('progress', True, 'Show a progress bar.')
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  # Heavy imports after flag parsing so --help is fast.
  from wm_tf.config import ConfigError, load_config
  from wm_tf.runtime.environments import UnsupportedEnvironment
  overrides = list(FLAGS.set)
  if FLAGS.seed is not None:
    overrides.append(f'seed={FLAGS.seed}')
  if FLAGS.jit is not None:
    overrides.append(f'run.jit={str(FLAGS.jit).lower()}')
  try:
    config = load_config(FLAGS.config, overrides)
    logdir = FLAGS.logdir or f'logdir/{config.env.id}-seed{config.seed}'
    from wm_tf.runtime.trainer import Trainer
    trainer = Trainer(config, logdir, progress=FLAGS.progress)
  except (ConfigError, UnsupportedEnvironment) as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  summary = trainer.run()
  print(f'done: {summary["env_steps"]} env steps in '
        f'{summary["wall_seconds"]:.0f} s; last eval return '
        f'{summary.get("eval/return", float("nan")):.1f}; logdir {logdir}')


if __name__ == '__main__':
  app.run(main)
