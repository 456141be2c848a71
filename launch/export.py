r"""Exports the newest checkpoint of a run as a SavedModel for TF Serving.

  python -m launch.export --logdir=/tmp/run --output=/tmp/models/cartpole

writes /tmp/models/cartpole/<version>/ (1, or the next free integer), with
the signatures described in `wm_tf.runtime.export`.
"""

import logging
import sys

from absl import app, flags
from absl import logging as absl_logging

flags.DEFINE_string('logdir', None,
                    'Run directory (config.yaml, checkpoints/).')
flags.DEFINE_string('output', None,
                    'Model base directory; the SavedModel goes to '
                    'OUTPUT/<version>/.')
flags.DEFINE_integer('version', None,
                     'Version number (default: 1 more than the largest '
                     'present, or 1).')
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  for name in ('logdir', 'output'):
    if not FLAGS[name].value:
      print(f'error: --{name} is required.', file=sys.stderr)
      sys.exit(2)
  if not FLAGS['verbosity'].present:
    # TensorFlow's Python logger reports every SavedModel file at INFO.
    absl_logging.set_verbosity(absl_logging.WARNING)
  # Heavy imports after flag parsing so --help is fast.
  from wm_tf.runtime.export import ExportError, export_run
  try:
    path = export_run(FLAGS.logdir, FLAGS.output, FLAGS.version)
  except ExportError as e:
    print(f'error: {e}', file=sys.stderr)
    # A failed restore leaves objects that warn about unrestored values as
    # the interpreter exits; the error above already says what is wrong.
    logging.getLogger('tensorflow').setLevel(logging.ERROR)
    sys.exit(2)
  print(f'exported {FLAGS.logdir} to {path}')


if __name__ == '__main__':
  app.run(main)
