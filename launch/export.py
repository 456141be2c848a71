r"""Exports the newest checkpoint of a run for serving.

  python -m launch.export --logdir=/tmp/run --output=/tmp/models/cartpole \
      --formats=saved_model,onnx,tflite

writes version N (1, or the next free integer) of /tmp/models/cartpole:
N/ (the SavedModel, signatures in `wm_tf.runtime.export`), N.onnx and
N.tflite (the deterministic policy, `wm_tf.runtime.portable_export`).
"""

import logging
import sys

from absl import app, flags
from absl import logging as absl_logging

from wm_tf.runtime import export_formats

flags.DEFINE_string('logdir', None,
                    'Run directory (config.yaml, checkpoints/).')
flags.DEFINE_string('output', None,
                    'Model base directory; the SavedModel goes to '
                    'OUTPUT/<version>/, ONNX and TFLite files to '
                    'OUTPUT/<version>.onnx and OUTPUT/<version>.tflite.')
flags.DEFINE_integer('version', None,
                     'Version number (default: 1 more than the largest '
                     'present, or 1).')
flags.DEFINE_list('formats', list(export_formats.DEFAULT_FORMATS),
                  'Comma-separated formats to write, of '
                  f'{", ".join(export_formats.FORMATS)}.')
FLAGS = flags.FLAGS


def _fail(message: str) -> None:
  print(f'error: {message}', file=sys.stderr)
  sys.exit(2)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  for name in ('logdir', 'output'):
    if not FLAGS[name].value:
      _fail(f'--{name} is required.')
  if not FLAGS['verbosity'].present:
    # TensorFlow's Python logger reports every SavedModel file at INFO.
    absl_logging.set_verbosity(absl_logging.WARNING)
  try:
    formats = export_formats.check_formats(FLAGS.formats)
  except ValueError as e:
    _fail(f'--formats: {e}')
  # Heavy imports after flag checks so --help and flag errors are fast.
  from wm_tf.runtime.export import ExportError, export_run_formats
  try:
    paths = export_run_formats(FLAGS.logdir, FLAGS.output, FLAGS.version,
                               formats)
  except ExportError as e:
    # A failed restore leaves objects that warn about unrestored values as
    # the interpreter exits; the error below already says what is wrong.
    logging.getLogger('tensorflow').setLevel(logging.ERROR)
    _fail(str(e))
  for format_, path in paths.items():
    print(f'exported {FLAGS.logdir} as {format_} to {path}')


if __name__ == '__main__':
  app.run(main)
