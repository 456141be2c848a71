"""Running `launch.train` in subprocesses and reading what the runs wrote.

Shared by the benchmarks that train agents (sample_efficiency.py,
alternatives.py): each run is its own process, so its memory, threads and
XLA caches are its own, and a crash ends one run, not the benchmark.
"""

import csv
import os
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def threads_per_run(parallel: int, threads: Optional[int] = None) -> int:
  """TensorFlow threads for each of `parallel` runs sharing the cores:
  `threads` if given, else the cores / `parallel`, at least 1."""
  return threads or max(1, (os.cpu_count() or 1) // parallel)


def train_command(config: str, logdir: str, seed: int,
                  overrides: Sequence[str] = (), threads: int = 0
                  ) -> List[str]:
  """The `python -m launch.train` command line of one run (`threads`:
  its TensorFlow threads, 0 for TensorFlow's default)."""
  return ([sys.executable, '-m', 'launch.train', f'--config={config}',
           f'--logdir={logdir}', f'--seed={seed}', '--noprogress',
           f'--threads={threads}'] + [f'--set={s}' for s in overrides])


def run_jobs(jobs: List[Dict], parallel: int) -> None:
  """Runs every job's 'cmd', at most `parallel` at once.

  Each job is a dict with 'cmd' (argv), 'logdir' and 'name' (printed); its
  output goes to LOGDIR.log. Fills each job's 'exit' (return code) and
  'wall_seconds'.
  """
  pending, running = list(jobs), []
  while pending or running:
    while pending and len(running) < parallel:
      job = pending.pop(0)
      os.makedirs(os.path.dirname(job['logdir']) or '.', exist_ok=True)
      log = open(job['logdir'] + '.log', 'w')
      job['start'] = time.time()
      running.append((subprocess.Popen(job['cmd'], cwd=ROOT, stdout=log,
                                       stderr=subprocess.STDOUT), log, job))
    # A freed slot is refilled within the poll interval: short, since a
    # lab of a hundred short runs otherwise leaves a core idle for minutes.
    time.sleep(0.25)
    for item in list(running):
      proc, log, job = item
      if proc.poll() is None:
        continue
      log.close()
      running.remove(item)
      job['exit'] = proc.returncode
      job['wall_seconds'] = time.time() - job.pop('start')
      print(f'{job["name"]}: exit {proc.returncode}, '
            f'{job["wall_seconds"]:.0f} s', flush=True)


def read_evaluations(path: str) -> List[Dict[str, float]]:
  """The rows of a run's evaluations.csv (env_steps, eval/return, ...)."""
  with open(path) as f:
    return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def run_completed(logdir: str, budget: int) -> bool:
  """Whether the run in `logdir` evaluated at `budget` env steps or later
  (its evaluations.csv says so): it is done and need not be started."""
  path = os.path.join(logdir, 'evaluations.csv')
  if not os.path.exists(path):
    return False
  rows = read_evaluations(path)
  return bool(rows) and rows[-1]['env_steps'] >= budget


def steps_to_threshold(rows, threshold: Optional[float]) -> Optional[int]:
  """Env steps of the first evaluation >= threshold (None: never)."""
  if threshold is None:
    return None
  for row in rows:
    if row['eval/return'] >= threshold:
      return int(row['env_steps'])
  return None


def median(values):
  """The median of a list (None if empty); inf counts as a value."""
  values = sorted(values)
  if not values:
    return None
  mid = len(values) // 2
  return values[mid] if len(values) % 2 else 0.5 * (values[mid - 1] +
                                                    values[mid])


def error_line(log_path: str) -> str:
  """The last 'error: ...' line the launcher printed (without the prefix)."""
  try:
    with open(log_path) as f:
      errors = [l.strip()[len('error: '):] for l in f
                if l.startswith('error: ')]
  except OSError:
    return ''
  return errors[-1] if errors else ''
