r"""Throughput of the train step and of the training loop on this machine.

  python -m benchmarks.throughput                  # all sizes, ~5-10 min
  python -m benchmarks.throughput --quick          # smoke run, < 2 min
  python -m benchmarks.throughput --sizes=default --modes=xla --steps=20

One run measures, each part in its own subprocess (so that the peak
resident memory is that of one configuration, and a configuration that
fails, such as bfloat16 on a library that does not support it, is reported
instead of ending the run):

  * matmul: tf.linalg.matmul rate of an n x n x n product, float32 and
    bfloat16, without XLA (float32 also with XLA): the machine's peak.
  * train_step: `Learner.train` (world-model update + imagination + actor
    and critic updates) on a synthetic CartPole batch, for each model size
    (the width of every MLP) and each mode:
        xla       float32, jit_compile=True
        graph     float32, tf.function without XLA
        bf16      keras 'mixed_bfloat16' policy, without XLA
        bf16_xla  keras 'mixed_bfloat16' policy, with XLA (not by default)
    Reported: ms per step, train steps/s, imagined transitions/s
    (B * T start states x horizon H per step), the analytic FLOPs of one
    step (`train_step_flops`), the achieved GFLOP/s and its fraction of the
    measured float32 matmul rate, the first call's seconds (tracing plus
    compilation) and the peak RSS.
  * trainer: a short `Trainer.run` with configs/cartpole.yaml: env steps/s
    of the whole loop, and how much of the wall time was spent inside the
    train steps, in their first (compiling) calls and in acting.

Other processes sharing the CPU slow every number down; the load average
is recorded before and after each part so a noisy run can be recognised.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from typing import List, Optional, Sequence

from absl import app, flags

from benchmarks.step_setup import (ENV_ID, SIZES, size_overrides,
                                   synthetic_batch, train_step_flops)

flags.DEFINE_string('output', 'benchmarks/results/throughput.json',
                    'Where the JSON results go (directories are created).')
flags.DEFINE_list('sizes', ['small', 'default', 'large'],
                  'Model sizes to time: ' + ', '.join(
                      ['small (128 units)', 'default (256)', 'large (512)']))
flags.DEFINE_list('modes', ['xla', 'graph', 'bf16'],
                  'Train-step modes: xla, graph, bf16, bf16_xla.')
flags.DEFINE_integer('steps', 10, 'Timed train steps per configuration '
                     '(after the first call and one warm-up step).')
flags.DEFINE_integer('trainer_env_steps', 3000,
                     'Env steps of the Trainer run (0 skips it).')
flags.DEFINE_integer('matmul_size', 2048, 'n of the n x n x n matmul.')
flags.DEFINE_bool('quick', False,
                  'Smoke run: small size only, 3 steps, a 300-step Trainer '
                  'run and a 1024 matmul (explicit flags still win).')
flags.DEFINE_integer('timeout', 900, 'Seconds before a part is abandoned.')
flags.DEFINE_multi_string('set', [], 'Config overrides (key.path=value) of '
                          'the train-step parts, after the size, e.g. '
                          'replay.sequence_length=64.')
flags.DEFINE_string('worker', None, 'Internal: run one part (JSON task).')
FLAGS = flags.FLAGS

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CARTPOLE_CONFIG = os.path.join(REPO_ROOT, 'configs', 'cartpole.yaml')
RESULT_MARKER = 'THROUGHPUT_RESULT '

MODES = {  # name: (jit_compile, keras dtype policy or None)
    'xla': (True, None),
    'graph': (False, None),
    'bf16': (False, 'mixed_bfloat16'),
    'bf16_xla': (True, 'mixed_bfloat16'),
}
# ----------------------------------------------------------------------------
# Workers: each runs in its own process and prints one JSON result line.
# ----------------------------------------------------------------------------


def _peak_rss_mb() -> float:
  import resource
  # ru_maxrss is in KiB on Linux.
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _median(values: Sequence[float]) -> float:
  ordered = sorted(values)
  mid = len(ordered) // 2
  if len(ordered) % 2:
    return ordered[mid]
  return 0.5 * (ordered[mid - 1] + ordered[mid])


def _matmul_worker(task: dict) -> dict:
  """GFLOP/s of an n x n x n matmul per dtype (eager, and fp32 under XLA)."""
  import tensorflow as tf
  n = task['n']
  flops = 2.0 * n ** 3
  out = {'n': n}
  cases = [('float32', tf.float32, False), ('bfloat16', tf.bfloat16, False),
           ('float32_xla', tf.float32, True)]
  for name, dtype, jit in cases:
    try:
      a = tf.cast(tf.random.stateless_normal([n, n], [1, 2]), dtype)
      b = tf.cast(tf.random.stateless_normal([n, n], [3, 4]), dtype)
      matmul = (tf.function(tf.linalg.matmul, jit_compile=True) if jit
                else tf.linalg.matmul)
      for _ in range(2):
        float(matmul(a, b)[0, 0])
      # Enough calls for ~0.5 s per sample, five samples.
      start = time.perf_counter()
      float(matmul(a, b)[0, 0])
      calls = max(1, int(0.5 / max(time.perf_counter() - start, 1e-6)))
      rates = []
      for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
          result = matmul(a, b)
        float(result[0, 0])
        rates.append(flops * calls / (time.perf_counter() - start) / 1e9)
      out[name] = {'gflops_median': round(_median(rates), 1),
                   'gflops_best': round(max(rates), 1),
                   'gflops_worst': round(min(rates), 1)}
    except Exception as e:  # pylint: disable=broad-except
      out[name] = {'error': f'{type(e).__name__}: {e}'[:500]}
  out['peak_rss_mb'] = round(_peak_rss_mb(), 1)
  return out


def _train_step_worker(task: dict) -> dict:
  """Times `Learner.train` for one size and mode."""
  import keras
  import numpy as np
  import tensorflow as tf
  jit, policy = MODES[task['mode']]
  if policy:
    keras.mixed_precision.set_global_policy(policy)
  from wm_tf.agent.builder import build_agent
  from wm_tf.config import load_config
  from wm_tf.runtime.environments import inspect_env

  config = load_config(None, size_overrides(task['units']) +
                       list(task.get('overrides', ())) +
                       [f'run.jit={str(jit).lower()}'])
  spec = inspect_env(ENV_ID)
  c = config
  starts = c.replay.batch_size * c.replay.sequence_length
  out = {'units': task['units'], 'jit': jit, 'dtype_policy': policy or
         'float32', 'start_states': starts, 'horizon': c.imagination.horizon,
         'flops': train_step_flops(config, spec.observation_dim,
                                   spec.action_dim, spec.discrete)}
  start = time.perf_counter()
  agent = build_agent(config, spec)
  out['build_s'] = round(time.perf_counter() - start, 2)
  batch = synthetic_batch(spec, c.replay.batch_size, c.replay.sequence_length)
  generator = tf.random.Generator.from_seed(0)

  def step():
    seed = tf.cast(generator.make_seeds(1)[:, 0], tf.int32)
    metrics = agent.learner.train(batch, seed)
    # Reading a value waits for the step to finish.
    float(metrics['actor/loss'])
    return metrics

  start = time.perf_counter()
  step()
  out['first_call_s'] = round(time.perf_counter() - start, 2)
  step()  # warm-up
  times, cpu_times = [], []
  for _ in range(task['steps']):
    start, cpu_start = time.perf_counter(), time.process_time()
    metrics = step()
    times.append(time.perf_counter() - start)
    cpu_times.append(time.process_time() - cpu_start)
  step_s = _median(times)
  out.update({
      'step_ms_median': round(1e3 * step_s, 2),
      # CPU seconds of this process (all its threads) per step: less
      # sensitive than wall time to other processes sharing the CPU.
      'cpu_ms_per_step_median': round(1e3 * _median(cpu_times), 2),
      'step_ms_min': round(1e3 * min(times), 2),
      'step_ms_max': round(1e3 * max(times), 2),
      'steps': len(times),
      'train_steps_per_s': round(1.0 / step_s, 3),
      'imagined_transitions_per_s': round(
          starts * c.imagination.horizon / step_s, 1),
      'achieved_gflops': round(out['flops']['total'] / step_s / 1e9, 2),
      'metrics_finite': bool(all(
          np.isfinite(float(v)) for v in metrics.values())),
      'peak_rss_mb': round(_peak_rss_mb(), 1),
  })
  return out


class _CallTimer:
  """Wraps a callable; records its call count, total and first-call time."""

  def __init__(self, fn):
    self.fn = fn
    self.calls = 0
    self.total_s = 0.0
    self.first_s = 0.0

  def __call__(self, *args, **kwargs):
    start = time.perf_counter()
    result = self.fn(*args, **kwargs)
    elapsed = time.perf_counter() - start
    if self.calls == 0:
      self.first_s = elapsed
    self.calls += 1
    self.total_s += elapsed
    return result

  def summary(self) -> dict:
    return {'calls': self.calls, 'total_s': round(self.total_s, 2),
            'first_call_s': round(self.first_s, 2)}


def _trainer_worker(task: dict) -> dict:
  """A short Trainer run on CartPole: where the loop's wall time goes."""
  import tempfile
  from wm_tf.config import load_config
  from wm_tf.runtime.trainer import Trainer

  total = task['env_steps']
  prefill = max(total // 3, 200)
  # Half of the updates world-model only (warmup), half the full step.
  warmup = prefill + (total - prefill) // 2
  overrides = [f'run.total_env_steps={total}', f'run.prefill_steps={prefill}',
               f'warmup.steps={warmup}', 'run.eval_every=0']
  config = load_config(CARTPOLE_CONFIG, overrides)
  with tempfile.TemporaryDirectory(prefix='wm_tf_bench_') as logdir:
    start = time.perf_counter()
    trainer = Trainer(config, logdir, progress=False)
    build_s = time.perf_counter() - start
    learner, policy = trainer.agent.learner, trainer.agent.policy
    # The loop calls these through the instances, so wrapping the instance
    # attributes times every call made by the loop.
    timers = {'train': _CallTimer(learner.train),
              'train_world_model': _CallTimer(learner.train_world_model),
              'act': _CallTimer(policy.act)}
    learner.train = timers['train']
    learner.train_world_model = timers['train_world_model']
    policy.act = timers['act']
    start, cpu_start = time.perf_counter(), time.process_time()
    summary = trainer.run()
    wall_s = time.perf_counter() - start
    cpu_s = time.process_time() - cpu_start
  env_steps = int(summary['env_steps'])
  update_s = timers['train'].total_s + timers['train_world_model'].total_s
  compile_s = sum(t.first_s for t in timers.values())
  steady_s = wall_s - compile_s
  full = timers['train']
  return {
      'config': os.path.relpath(CARTPOLE_CONFIG, REPO_ROOT),
      'overrides': overrides,
      'units': config.actor.units,
      'batch': [config.replay.batch_size, config.replay.sequence_length],
      'jit': config.run.jit,
      'env_steps': env_steps,
      'build_s': round(build_s, 2),
      'wall_s': round(wall_s, 2),
      'cpu_s': round(cpu_s, 2),
      'env_steps_per_s': round(env_steps / wall_s, 1),
      'env_steps_per_s_excluding_first_calls': round(
          env_steps / max(steady_s, 1e-9), 1),
      'first_calls_s': round(compile_s, 2),
      'update_s': round(update_s, 2),
      'update_fraction_of_wall': round(update_s / wall_s, 3),
      # The loop-share target, first (compiling) calls excluded:
      # the share of steady-state wall time spent outside the updates.
      'outside_update_fraction_excluding_first_calls': round(
          1.0 - (update_s - timers['train'].first_s -
                 timers['train_world_model'].first_s) / max(steady_s, 1e-9),
          3),
      'train_step_ms_after_first': round(
          1e3 * (full.total_s - full.first_s) / max(full.calls - 1, 1), 2),
      'timers': {k: t.summary() for k, t in timers.items()},
      'other_s': round(wall_s - update_s - timers['act'].total_s, 2),
      'peak_rss_mb': round(_peak_rss_mb(), 1),
  }


_WORKERS = {'matmul': _matmul_worker, 'train_step': _train_step_worker,
            'trainer': _trainer_worker}


def _describe_error(error: Exception) -> str:
  """'Type: message (at the innermost wm_tf frame)', for the report."""
  import traceback
  frames = [f for f in traceback.extract_tb(error.__traceback__)
            if f'{os.sep}wm_tf{os.sep}' in f.filename]
  where = ''
  if frames:
    f = frames[-1]
    where = f' (at {os.path.relpath(f.filename, REPO_ROOT)}:{f.lineno})'
  message = ' '.join(str(error).split())
  return f'{type(error).__name__}{where}: {message}'[:1000]


def _run_worker(task: dict) -> None:
  try:
    result = _WORKERS[task['kind']](task)
  except Exception as e:  # pylint: disable=broad-except
    result = {'error': _describe_error(e)}
  print(RESULT_MARKER + json.dumps(result), flush=True)


# ----------------------------------------------------------------------------
# The parent: launches the parts one after another and reports.
# ----------------------------------------------------------------------------


def _load() -> Optional[float]:
  try:
    return round(os.getloadavg()[0], 2)
  except OSError:
    return None


def _launch(task: dict, timeout: float) -> dict:
  """Runs one part in a fresh Python process; never raises."""
  env = dict(os.environ)
  env.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  command = [sys.executable, '-m', 'benchmarks.throughput',
             '--worker=' + json.dumps(task)]
  load_before = _load()
  start = time.perf_counter()
  try:
    proc = subprocess.run(command, cwd=REPO_ROOT, env=env, text=True,
                          capture_output=True, timeout=timeout)
  except subprocess.TimeoutExpired:
    result = {'error': f'timed out after {timeout:.0f} s'}
  else:
    lines = [l for l in proc.stdout.splitlines()
             if l.startswith(RESULT_MARKER)]
    if lines:
      result = json.loads(lines[-1][len(RESULT_MARKER):])
    else:
      tail = (proc.stderr or '').strip().splitlines()[-5:]
      result = {'error': f'exit code {proc.returncode}: ' + ' | '.join(tail)}
  result['process_s'] = round(time.perf_counter() - start, 1)
  result['load_before'] = load_before
  result['load_after'] = _load()
  return result


def _machine() -> dict:
  info = {'platform': platform.platform(), 'python': platform.python_version(),
          'cpus': os.cpu_count()}
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          info['cpu'] = line.split(':', 1)[1].strip()
          break
  except OSError:
    pass
  try:
    commit = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=30)
    dirty = subprocess.run(['git', 'status', '--porcelain', '--', 'wm_tf',
                            'configs'], cwd=REPO_ROOT, capture_output=True,
                           text=True, timeout=30)
    info['commit'] = commit.stdout.strip()
    info['library_modified'] = bool(dirty.stdout.strip())
  except (OSError, subprocess.SubprocessError):
    pass
  try:
    from importlib import metadata
    for package in ('tensorflow', 'keras', 'tensorflow-probability'):
      info[package] = metadata.version(package)
  except Exception:  # pylint: disable=broad-except
    pass
  return info


@dataclasses.dataclass
class _Plan:
  sizes: List[str]
  modes: List[str]
  steps: int
  trainer_env_steps: int
  matmul_size: int


def _plan() -> _Plan:
  quick = FLAGS.quick

  def pick(name, quick_value):
    return quick_value if quick and not FLAGS[name].present else FLAGS[name].value

  plan = _Plan(sizes=list(pick('sizes', ['small'])),
               modes=list(FLAGS.modes), steps=pick('steps', 3),
               trainer_env_steps=pick('trainer_env_steps', 300),
               matmul_size=pick('matmul_size', 1024))
  for size in plan.sizes:
    if size not in SIZES:
      raise app.UsageError(f'Unknown size {size!r}; known: {list(SIZES)}.')
  for mode in plan.modes:
    if mode not in MODES:
      raise app.UsageError(f'Unknown mode {mode!r}; known: {list(MODES)}.')
  if plan.steps < 1:
    raise app.UsageError('--steps must be >= 1.')
  return plan


def _fmt(value, spec='') -> str:
  if value is None:
    return '-'
  return format(value, spec)


def format_report(results: dict) -> str:
  """The human-readable table of a results dict."""
  lines = []
  mm = results.get('matmul', {})
  for name in ('float32', 'bfloat16', 'float32_xla'):
    r = mm.get(name, {})
    if 'error' in r:
      lines.append(f'matmul {name:12s} failed: {r["error"]}')
    elif r:
      lines.append(f'matmul {mm["n"]}^3 {name:12s} {r["gflops_median"]:8.1f} '
                   f'GFLOP/s median (best {r["gflops_best"]:.1f}, worst '
                   f'{r["gflops_worst"]:.1f})')
  if 'error' in mm:
    lines.append(f'matmul failed: {mm["error"]}')
  lines.append('')
  header = (f'{"size":8s} {"mode":9s} {"units":>5s} {"ms/step":>8s} '
            f'{"[min-max]":>15s} {"cpu ms":>7s} {"steps/s":>7s} {"imag tr/s":>10s} '
            f'{"GFLOP":>6s} {"GFLOP/s":>8s} {"%fp32pk":>7s} {"1st s":>6s} '
            f'{"RSS MB":>7s} {"load":>5s}')
  lines.append(header)
  lines.append('-' * len(header))
  for r in results.get('train_step', []):
    if 'error' in r:
      lines.append(f'{r["size"]:8s} {r["mode"]:9s} FAILED: {r["error"][:200]}')
      continue
    frac = r.get('fraction_of_fp32_peak')
    lines.append(
        f'{r["size"]:8s} {r["mode"]:9s} {r["units"]:5d} '
        f'{r["step_ms_median"]:8.1f} '
        f'{"[" + _fmt(r["step_ms_min"], ".0f") + "-" + _fmt(r["step_ms_max"], ".0f") + "]":>15s} '
        f'{r["cpu_ms_per_step_median"]:7.0f} '
        f'{r["train_steps_per_s"]:7.2f} {r["imagined_transitions_per_s"]:10.0f} '
        f'{r["flops"]["total"] / 1e9:6.1f} {r["achieved_gflops"]:8.1f} '
        f'{_fmt(None if frac is None else 100 * frac, "6.1f"):>6s}% '
        f'{r["first_call_s"]:6.1f} {r["peak_rss_mb"]:7.0f} '
        f'{_fmt(r["load_before"]):>5s}'
        + ('' if r['metrics_finite'] else '  (non-finite metrics!)'))
  t = results.get('trainer')
  if t:
    lines.append('')
    if 'error' in t:
      lines.append(f'trainer FAILED: {t["error"][:300]}')
    else:
      outside = t['outside_update_fraction_excluding_first_calls']
      lines.append(
          f'trainer {t["config"]} ({t["units"]} units, batch '
          f'{t["batch"][0]}x{t["batch"][1]}, jit={t["jit"]}): '
          f'{t["env_steps"]} env steps in {t["wall_s"]:.1f} s '
          f'({t["cpu_s"]:.0f} CPU s) = '
          f'{t["env_steps_per_s"]:.1f} env steps/s '
          f'({t["env_steps_per_s_excluding_first_calls"]:.1f} without the '
          f'{t["first_calls_s"]:.1f} s of first calls); '
          f'{100 * t["update_fraction_of_wall"]:.0f}% of wall time in '
          f'train steps ({100 * outside:.0f}% of the steady state '
          f'outside them), full step '
          f'{t["train_step_ms_after_first"]:.1f} ms; '
          f'peak RSS {t["peak_rss_mb"]:.0f} MB')
  lines.append('')
  machine = results['machine']
  if 'commit' in machine:
    lines.append(f'commit {machine["commit"][:12]}'
                 + (' (wm_tf/ or configs/ modified)'
                    if machine.get('library_modified') else ''))
  lines.append(f'load average {results["load_start"]} at start, '
               f'{results["load_end"]} at end, on {results["machine"]["cpus"]}'
               f' CPUs; total {results["elapsed_s"]:.0f} s')
  return '\n'.join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if FLAGS.worker:
    _run_worker(json.loads(FLAGS.worker))
    return
  plan = _plan()
  start = time.perf_counter()
  results = {'machine': _machine(), 'plan': dataclasses.asdict(plan),
             'overrides': list(FLAGS.set),
             'load_start': _load()}
  print(f'matmul {plan.matmul_size}^3 ...', flush=True)
  results['matmul'] = _launch({'kind': 'matmul', 'n': plan.matmul_size},
                              FLAGS.timeout)
  fp32 = results['matmul'].get('float32', {})
  peak = fp32.get('gflops_best')
  results['fp32_peak_gflops'] = peak
  results['train_step'] = []
  for size in plan.sizes:
    for mode in plan.modes:
      print(f'train step {size} {mode} ...', flush=True)
      r = _launch({'kind': 'train_step', 'units': SIZES[size], 'mode': mode,
                   'steps': plan.steps, 'overrides': FLAGS.set}, FLAGS.timeout)
      r.update(size=size, mode=mode)
      if 'achieved_gflops' in r and peak:
        r['fraction_of_fp32_peak'] = round(r['achieved_gflops'] / peak, 3)
      results['train_step'].append(r)
  if plan.trainer_env_steps > 0:
    print(f'trainer {plan.trainer_env_steps} env steps ...', flush=True)
    results['trainer'] = _launch({'kind': 'trainer',
                                  'env_steps': plan.trainer_env_steps},
                                 FLAGS.timeout)
  results['load_end'] = _load()
  results['elapsed_s'] = round(time.perf_counter() - start, 1)
  output = FLAGS.output
  if not os.path.isabs(output):
    output = os.path.join(REPO_ROOT, output)
  os.makedirs(os.path.dirname(output), exist_ok=True)
  with open(output, 'w') as f:
    json.dump(results, f, indent=2)
  print()
  print(format_report(results))
  print(f'\nwrote {output}')


if __name__ == '__main__':
  app.run(main)
