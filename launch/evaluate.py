r"""Evaluates a trained policy: mean and std return, and optionally a video.

  python -m launch.evaluate --logdir=/tmp/run --episodes=10 --video
  python -m launch.evaluate --saved_model=/tmp/models/cartpole/1 --episodes=10

--logdir restores the newest readable checkpoint of a run; --saved_model
loads a SavedModel written by launch.export, which records the run's env
section (id, pixels, action repeat, family settings). Either way the policy
plays its training environment unless --env names another. --video renders
the first --video_episodes episodes to a GIF (or MP4, with imageio-ffmpeg).
"""

import os
import sys

from absl import app, flags, logging

flags.DEFINE_string('logdir', None, 'Run directory written by launch.train.')
flags.DEFINE_string('saved_model', None,
                    'SavedModel directory written by launch.export.')
flags.DEFINE_string('env', None,
                    'Environment id (default: the one the policy was '
                    'trained on).')
flags.DEFINE_integer('episodes', 10, 'Episodes to play.', lower_bound=1)
flags.DEFINE_integer('seed', 0, 'Episode i resets with seed SEED + i.')
flags.DEFINE_bool('sample', False,
                  'Sample actions from the policy instead of taking its '
                  'deterministic action.')
flags.DEFINE_bool('video', False, 'Write a video of the first episodes.')
flags.DEFINE_string('video_path', None,
                    'Where the video goes, .gif or .mp4 (default: '
                    'LOGDIR/eval.gif, or ./eval.gif with --saved_model).')
flags.DEFINE_integer('video_episodes', 1, 'Episodes in the video.',
                     lower_bound=1)
flags.DEFINE_integer('fps', 30, 'Frames per second of the video.',
                     lower_bound=1)
FLAGS = flags.FLAGS


def _fail(message):
  print(f'error: {message}', file=sys.stderr)
  sys.exit(2)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if bool(FLAGS.logdir) == bool(FLAGS.saved_model):
    _fail('give exactly one of --logdir=RUN or --saved_model=DIR.')
  if not FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
  # Heavy imports after flag checks so --help and usage errors are fast.
  from wm_tf.runtime import evaluation
  try:
    if FLAGS.logdir:
      policy = evaluation.policy_from_run(FLAGS.logdir)
    else:
      policy = evaluation.policy_from_saved_model(FLAGS.saved_model)
    env_id = FLAGS.env or policy.env_id
    if env_id is None:
      _fail(f'{FLAGS.saved_model} does not record its environment (it was '
            'exported before SavedModels did): name it with --env=ID, '
            'e.g. --env=CartPole-v1.')
    max_steps = policy.max_episode_steps if env_id == policy.env_id else None
    writer = None
    if FLAGS.video:
      path = FLAGS.video_path or os.path.join(FLAGS.logdir or '.', 'eval.gif')
      writer = evaluation.VideoWriter(path, fps=FLAGS.fps)
    try:
      returns = evaluation.run_episodes(
          policy, env_id, FLAGS.episodes, FLAGS.seed, max_steps,
          deterministic=not FLAGS.sample,
          on_frame=writer.add if writer else None,
          record_episodes=FLAGS.video_episodes if writer else 0)
    finally:
      if writer:
        writer.close()
  except evaluation.EvaluationError as e:
    _fail(e)
  print(f'policy: {policy.source}; environment: {env_id}')
  for i, value in enumerate(returns):
    print(f'episode {i}: return {value:.2f}')
  print(evaluation.summarize(returns))
  if writer:
    print(f'video: {writer.path} ({writer.frames} frames)')


if __name__ == '__main__':
  app.run(main)
