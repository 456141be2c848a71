"""Tests for launch/tensorflow_logging.py: quiet launchers unless asked.

Each launcher runs in a subprocess with the user's environment as it would
be (no TF_CPP_MIN_LOG_LEVEL); its output must hold none of TensorFlow's
C++ log lines, and with --verbosity=1 (or an explicit TF_CPP_MIN_LOG_LEVEL=0)
they must come back, which also shows that this machine prints them.
"""

import os
import re
import subprocess
import sys

import pytest

from conftest import REPO_ROOT, SMALL_OVERRIDES
from launch import tensorflow_logging as tl
from wm_tf.config import load_config
from wm_tf.runtime.trainer import Trainer

# What TensorFlow 2.21 prints on a CPU-only machine, by hand from its output.
CPP_LINES = re.compile(
    r'^[IWEF]0000 |absl::InitializeLog|oneDNN|cuInit|cuda drivers',
    re.MULTILINE)
PREAMBLE = ('WARNING: All log messages before absl::InitializeLog() is '
            'called are written to STDERR\n')
ONEDNN = ('I0000 00:00:1796158378.149677    4032 port.cc:153] oneDNN custom '
          'operations are on.\n')
CUINIT = ('E0000 00:00:1796158379.391960    4032 cuda_platform.cc:52] failed '
          'call to cuInit: INTERNAL: CUDA error\n')
FATAL = 'F0000 00:00:1796158379.391960    4032 x.cc:1] Check failed\n'

TRAIN = list(SMALL_OVERRIDES) + [
    'env.id=CartPole-v1', 'env.num_envs=1', 'run.total_env_steps=20',
    'run.prefill_steps=20', 'run.eval_every=0', 'run.checkpoint_every=0']


def _run(module, *args, level=None, timeout=240):
  """`python -m module args` (or `python -c code args` for module '-c')."""
  env = dict(os.environ)
  env.pop(tl.LEVEL_VARIABLE, None)  # a user's environment, not the tests'
  if level is not None:
    env[tl.LEVEL_VARIABLE] = level
  command = [sys.executable, '-m', module] if module != '-c' else [
      sys.executable, '-c']
  return subprocess.run([*command, *args], cwd=REPO_ROOT,
                        env=env, capture_output=True, text=True,
                        timeout=timeout)


@pytest.fixture(scope='module')
def logdir(tmp_path_factory):
  """A run directory with one checkpoint, made in this process."""
  path = tmp_path_factory.mktemp('quiet') / 'run'
  trainer = Trainer(load_config(None, TRAIN), str(path), progress=False)
  trainer.save_checkpoint()
  return path


def _commands(logdir, name):
  out = logdir.parent / f'export-{name}'
  return {
      'launch.train': ['--noprogress', f'--logdir={logdir.parent / name}',
                       *[a for o in TRAIN for a in ('--set', o)]],
      'launch.evaluate': [f'--logdir={logdir}', '--episodes=1'],
      'launch.export': [f'--logdir={logdir}', f'--output={out}'],
  }


@pytest.mark.parametrize('module',
                         ['launch.train', 'launch.evaluate', 'launch.export'])
def test_launcher_prints_no_tensorflow_log(module, logdir):
  quiet = _run(module, *_commands(logdir, 'quiet')[module])
  assert quiet.returncode == 0, quiet.stderr
  assert not CPP_LINES.findall(quiet.stdout + quiet.stderr), quiet.stderr


def test_verbosity_brings_the_log_back(logdir):
  """The rule is the `launch` package's, before any launcher's own code,
  so one launcher shows it for all."""
  module = 'launch.evaluate'
  verbose = _run(module, '--verbosity=1',
                 *_commands(logdir, 'verbose')[module])
  assert verbose.returncode == 0, verbose.stderr
  # TensorFlow's C++ log lines, which --verbosity lets through (its
  # oneDNN notice only on CPUs where oneDNN's custom ops are on).
  assert 'I0000' in verbose.stderr
  assert CPP_LINES.findall(verbose.stderr)


def test_user_level_wins(logdir):
  """TF_CPP_MIN_LOG_LEVEL=0 shows everything; 2 hides INFO but not ERROR."""
  args = _commands(logdir, 'level')['launch.evaluate']
  shown = _run('launch.evaluate', *args, level='0')
  assert shown.returncode == 0, shown.stderr
  assert 'I0000' in shown.stderr and 'cuInit' in shown.stderr
  errors = _run('launch.evaluate', *args, level='2')
  assert errors.returncode == 0, errors.stderr
  assert 'I0000' not in errors.stderr and 'absl::' not in errors.stderr
  assert 'E0000' in errors.stderr  # cuInit, at device initialisation


@pytest.mark.parametrize('verbosity', [[], ['--verbosity=1']])
def test_benchmarks_share_the_rule(verbosity):
  """The benchmarks package applies the rule before its scripts run."""
  code = ('import benchmarks, tensorflow as tf; '
          'print(float(tf.constant(1.0) + 1))')
  result = _run('-c', code, *verbosity)
  assert result.returncode == 0 and result.stdout == '2.0\n', result.stderr
  assert bool(CPP_LINES.findall(result.stderr)) == bool(verbosity)


@pytest.mark.parametrize('argv, expected', [
    ([], None),
    (['--verbosity=1'], 1),
    (['--verbosity', '2'], 2),
    (['-v', '0'], 0),
    (['-v=1', '--verbosity=-1'], -1),
    (['--verbosity=1', '--', '--verbosity=3'], 1),
    (['--verbosity=loud'], None),
    (['--set', 'v=1'], None),
])
def test_verbosity_from_argv(argv, expected):
  assert tl.verbosity_from_argv(['prog', *argv]) == expected


@pytest.mark.parametrize('argv, environ, expected', [
    ([], {}, 3),
    (['--verbosity=0'], {}, 3),
    (['--verbosity=1'], {}, None),
    (['--verbosity=1'], {'TF_CPP_MIN_LOG_LEVEL': '1'}, 1),
    ([], {'TF_CPP_MIN_LOG_LEVEL': '0'}, None),
    ([], {'TF_CPP_MIN_LOG_LEVEL': '2'}, 2),
    ([], {'TF_CPP_MIN_LOG_LEVEL': 'x'}, None),
])
def test_hidden_level(argv, environ, expected):
  assert tl.hidden_level(['prog', *argv], environ) == expected


def test_is_hidden_keeps_what_is_not_below_the_level():
  for line in (PREAMBLE, ONEDNN, CUINIT):
    assert tl.is_hidden(line, 3)
  assert not tl.is_hidden(FATAL, 3)
  assert not tl.is_hidden(CUINIT, 2) and tl.is_hidden(ONEDNN, 2)
  assert not tl.is_hidden(PREAMBLE, 1) and tl.is_hidden(ONEDNN, 1)
  assert not tl.is_hidden('UserWarning: something\n', 3)
  assert not tl.is_hidden('Traceback (most recent call last):\n', 3)


def test_filtered_stderr_passes_other_lines_through(capfd):
  with tl.filtered_stderr(3):
    os.write(2, (PREAMBLE + ONEDNN + 'kept\n' + CUINIT + FATAL).encode())
  err = capfd.readouterr().err
  assert err == 'kept\n' + FATAL
