"""Tests for wm_tf/runtime/run_lock.py: one training process per logdir."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from conftest import REPO_ROOT
from wm_tf.runtime import run_lock

# A second process that takes the lock, says so, and waits.
_HOLDER = textwrap.dedent('''
    import sys, time
    from wm_tf.runtime import run_lock
    handle = run_lock.lock_run_directory(sys.argv[1])
    print('locked', flush=True)
    time.sleep(120)
''')


def _hold(logdir):
  process = subprocess.Popen([sys.executable, '-c', _HOLDER, str(logdir)],
                             cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
  assert process.stdout.readline().strip() == 'locked'
  return process


def test_a_second_process_is_refused_with_the_holders_pid(tmp_path):
  holder = _hold(tmp_path / 'run')
  try:
    with pytest.raises(run_lock.RunDirectoryInUse,
                       match=f'in use by another training process '
                             f'\\(pid {holder.pid}\\).*another --logdir'):
      run_lock.lock_run_directory(str(tmp_path / 'run'))
  finally:
    holder.kill()
    holder.wait()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
  holder = _hold(tmp_path / 'run')
  holder.send_signal(signal.SIGKILL)
  holder.wait()
  handle = run_lock.lock_run_directory(str(tmp_path / 'run'))
  with open(tmp_path / 'run' / run_lock.LOCK_FILE) as f:
    assert f.read() == f'pid {os.getpid()}\n'
  handle.close()


def test_the_launcher_refuses_a_logdir_in_training(tmp_path):
  holder = _hold(tmp_path / 'run')
  try:
    result = subprocess.run(
        [sys.executable, '-m', 'launch.train', f'--logdir={tmp_path / "run"}',
         '--noprogress'], cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=300)
  finally:
    holder.kill()
    holder.wait()
  assert result.returncode == 1
  assert 'Traceback' not in result.stderr
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith('error: ') and f'pid {holder.pid}' in last
  assert not os.path.exists(tmp_path / 'run' / 'config.yaml')
