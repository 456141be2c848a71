r"""Trains a world-model agent.

  python -m launch.train --config=configs/cartpole.yaml --logdir=/tmp/run \
      --set actor.entropy=1e-3 --set run.total_env_steps=20000

Running the same command again with the same --logdir resumes the run from
its newest checkpoint.
"""

import sys

from absl import app, flags, logging

flags.DEFINE_string('config', 'configs/cartpole.yaml', 'YAML config file.')
flags.DEFINE_string('logdir', None, 'Run directory (TensorBoard, checkpoints).')
flags.DEFINE_integer('seed', None, 'Overrides the config key seed.')
flags.DEFINE_multi_string('set', [], 'Override: key.path=value (repeatable).')
flags.DEFINE_bool('jit', None, 'Compile with XLA (overrides run.jit).')
flags.DEFINE_bool('progress', True, 'Show a progress bar.')
flags.DEFINE_bool('print_config', False,
                  'Print the resolved config (presets, file and overrides '
                  'merged) as YAML and exit.')
flags.DEFINE_bool('allow_config_change', False,
                  'Resume a run even if the config differs from its saved '
                  'config.yaml (which is then replaced).')
flags.DEFINE_bool('deterministic', False,
                  'Deterministic TensorFlow ops and every generator seeded: '
                  'the same seed gives the same losses (slower).')
flags.DEFINE_enum('strategy', 'default',
                  ['default', 'mirrored', 'multi_worker', 'tpu'],
                  'Devices to train on (wm_tf/runtime/distribution.py): one '
                  'device; all local GPUs (else logical CPUs); the workers '
                  'of TF_CONFIG; a TPU (--tpu).')
flags.DEFINE_string('tpu', '', "--strategy=tpu: the TPU's name or grpc:// "
                    "address ('': this TPU VM's own).")
flags.DEFINE_integer('threads', 0,
                     "TensorFlow's intra- and inter-op threads (0: its "
                     'default, as many as the cores); for runs that share '
                     "a machine's cores.")
flags.DEFINE_string('profile_steps', None,
                    'START,STOP: profile train steps START <= s < STOP '
                    '(trace in LOGDIR/plugins/profile, TensorBoard Profile '
                    'tab).')
FLAGS = flags.FLAGS


def _profile_steps(text):
  """'START,STOP' -> (START, STOP), or None; raises ValueError."""
  if not text:
    return None
  try:
    start, stop = (int(x) for x in text.split(','))
  except ValueError:
    raise ValueError(f'--profile_steps={text!r} must be two integers '
                     'START,STOP (train-step numbers), e.g. 100,110.') from None
  if not 0 <= start < stop:
    raise ValueError(f'--profile_steps={text!r} needs 0 <= START < STOP.')
  return start, stop


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if not FLAGS['verbosity'].present:
    # TensorFlow logs every checkpoint save, and dm_control its OpenGL
    # backend, at INFO level.
    logging.set_verbosity(logging.WARNING)
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
    profile_steps = _profile_steps(FLAGS.profile_steps)
  except (ConfigError, ValueError) as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  if FLAGS.print_config:
    from wm_tf.config import to_yaml
    print(to_yaml(config), end='')
    return
  from wm_tf.config.validation import route_observation_keys
  from wm_tf.runtime.environments import inspect_env
  try:
    # Before TensorFlow is imported: a bad id, space or observation key
    # routing prints one line.
    spec = inspect_env(config.env.id, config.env.max_episode_steps,
                       options=config.env)
    route_observation_keys(config, spec.observations)
  except (UnsupportedEnvironment, ConfigError) as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  from wm_tf.runtime.checkpoints import default_logdir
  logdir = FLAGS.logdir or default_logdir(config.env.id, config.seed)
  from wm_tf.runtime import trainer as trainer_lib
  from wm_tf.runtime.checkpoints import NoUsableCheckpoint
  from wm_tf.runtime.run_lock import RunDirectoryInUse
  from wm_tf.runtime.distribution import limit_threads, make_strategy
  try:
    limit_threads(FLAGS.threads)
  except ValueError as e:
    print(f'error: --{e}', file=sys.stderr)
    sys.exit(2)
  # Before any other TensorFlow op (MultiWorkerMirroredStrategy needs it).
  strategy = make_strategy(FLAGS.strategy, tpu=FLAGS.tpu)
  try:
    if FLAGS.deterministic:
      trainer_lib.make_deterministic(config.seed)
    trainer = trainer_lib.Trainer(
        config, logdir, progress=FLAGS.progress,
        allow_config_change=FLAGS.allow_config_change,
        profile_steps=profile_steps, strategy=strategy)
  except (ConfigError, UnsupportedEnvironment) as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  except (NoUsableCheckpoint, RunDirectoryInUse) as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(1)
  for change in trainer.config_changes:
    print(f'config changed on resume: {change}', flush=True)
  restored = trainer.resumed_from
  if restored is not None or trainer.reloaded_steps:
    source = restored.path if restored else 'no checkpoint (a fresh agent)'
    print(f'resumed from {source}: train step {trainer.train_steps}; '
          f'{trainer.env_steps} env steps and {trainer.episodes} episodes '
          f'stored, {trainer.reloaded_steps} replay steps reloaded; '
          f'{trainer.dropped_evaluations} evaluation(s) after the checkpoint '
          'taken back', flush=True)
  print(f'training from env step {trainer.env_steps} (train step '
        f'{trainer.train_steps}) to {config.run.total_env_steps}; logdir '
        f'{logdir}', flush=True)
  try:
    summary = trainer.run()
  except trainer_lib.NonFiniteLossError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(1)
  print(f'done: {summary["env_steps"]} env steps in '
        f'{summary["wall_seconds"]:.0f} s; last eval return '
        f'{summary.get("eval/return", float("nan")):.1f}; logdir {logdir}')


if __name__ == '__main__':
  app.run(main)
