r"""Where the XLA train step spends its time, by kind of operation.

  python -m benchmarks.step_profile                    # default size (256)
  python -m benchmarks.step_profile --size=large --steps=5
  python -m benchmarks.step_profile --set=critic.distribution=twohot

Builds the agent of `benchmarks.throughput` for one model size, compiles
`Learner.train` with XLA on a synthetic CartPole batch, times --timed_steps
calls, then records --steps calls with the TensorFlow profiler. XLA's CPU
runtime emits one trace event per executed thunk (a matmul, a fusion, a
reduce-window, ...) on the threads that run them. The events are grouped
by kind (the thunk's name without its numeric suffix: all 'MatMul.*' and
dot fusions are 'matmul/dot') and reported as ms per step of thread time,
share of all thunk time, and thunks per step; with the wall time per step
this also gives how busy the executor threads were.

Writes <output> (JSON: the wall times, the thread busy times and the
groups) and prints the table. The raw trace stays in --trace_dir, for
TensorBoard's profile plugin. Run it on an otherwise idle machine: other
processes stretch the thunks unevenly.
"""

from __future__ import annotations

import bisect
import collections
import glob
import json
import os
import re
import tempfile
import time
from typing import Dict, Iterable, Tuple

from absl import app, flags

from benchmarks.step_setup import (ENV_ID, SIZES, size_overrides,
                                   synthetic_batch, train_step_flops)

flags.DEFINE_enum('size', 'default', list(SIZES), 'Model size (MLP width).')
flags.DEFINE_integer('timed_steps', 10, 'Steps timed without the profiler.')
flags.DEFINE_integer('steps', 3, 'Steps recorded by the profiler.')
flags.DEFINE_integer('top', 25, 'Groups shown in the table.')
flags.DEFINE_multi_string('set', [], 'Extra key=value config overrides.')
flags.DEFINE_string('output', '/tmp/wm_tf_step_profile.json', 'JSON output.')
flags.DEFINE_string('trace_dir', None, 'Profiler log dir (default: a '
                    'temporary directory, deleted at the end).')
FLAGS = flags.FLAGS

# Executor-level events that span many thunks; counted as thread busy time,
# not as a group.
_EXECUTOR_EVENT = 'ThunkExecutor::Execute'
# Control-flow thunks run other thunks, which have events of their own.
_CONTROL_FLOW = ('call', 'while', 'conditional')


def thunk_group(name: str) -> str:
  """The kind of a thunk from its event name: 'MatMul.816' -> 'matmul/dot'.

  Matmuls and dot fusions form one group; every other name loses its
  numeric suffix ('add_multiply_fusion.98' -> 'add_multiply_fusion',
  'wrapped_reduce-window.443' -> 'wrapped_reduce-window').
  """
  base = re.sub(r'(\.\d+)+$', '', name)
  if base.startswith('MatMul') or re.search(r'(^|_)dot($|_)', base):
    return 'matmul/dot'
  return base


def group_events(events: Iterable[Tuple[str, str, float, float]], steps: int
                 ) -> Tuple[Dict[str, dict], Dict[str, float]]:
  """Sums (thread, event name, start ms, duration ms) into per-step groups.

  A thunk is an event that lies inside a 'ThunkExecutor::Execute' event of
  its thread (the events that contain the executor, such as the Python
  thread's 'EagerExecute', are not thunks); control-flow thunks ('call',
  'while', 'conditional') are left out, as the thunks they run are counted.
  Returns ({group: {'ms_per_step', 'share', 'count_per_step'}} sorted by
  time, {thread: busy ms per step}, the executor events' time on each
  thread that ran one).
  """
  rows = list(events)
  spans = collections.defaultdict(list)
  for thread, name, start, ms in rows:
    if name == _EXECUTOR_EVENT:
      spans[thread].append((start, start + ms))
  busy = {t: round(sum(e - b for b, e in v) / steps, 2)
          for t, v in spans.items()}
  starts = {t: sorted(v) for t, v in spans.items()}

  def inside(thread, start, end):
    intervals = starts.get(thread, ())
    i = bisect.bisect_right(intervals, (start, float('inf'))) - 1
    return i >= 0 and intervals[i][1] >= end

  time_ms = collections.Counter()
  count = collections.Counter()
  for thread, name, start, ms in rows:
    if name == _EXECUTOR_EVENT or not inside(thread, start, start + ms):
      continue
    group = thunk_group(name)
    if group in _CONTROL_FLOW:
      continue
    time_ms[group] += ms / steps
    count[group] += 1.0 / steps
  total = sum(time_ms.values()) or 1.0
  groups = {g: {'ms_per_step': round(v, 3), 'share': round(v / total, 4),
                'count_per_step': round(count[g], 1)}
            for g, v in time_ms.most_common()}
  return groups, busy


def _trace_events(trace_dir: str):
  """(thread, event name, start ms, duration ms) of the newest trace."""
  from tensorflow.tsl.profiler.protobuf import xplane_pb2
  paths = sorted(glob.glob(os.path.join(trace_dir, '**', '*.xplane.pb'),
                           recursive=True), key=os.path.getmtime)
  if not paths:
    raise RuntimeError(f'The profiler wrote no trace under {trace_dir}.')
  space = xplane_pb2.XSpace()
  with open(paths[-1], 'rb') as f:
    space.ParseFromString(f.read())
  for plane in space.planes:
    names = {k: v.name for k, v in plane.event_metadata.items()}
    for line in plane.lines:
      for event in line.events:
        yield (f'{plane.name}/{line.name}', names.get(event.metadata_id, '?'),
               (line.timestamp_ns * 1e3 + event.offset_ps) / 1e9,
               event.duration_ps / 1e9)


def profile(size: str, timed_steps: int, steps: int, overrides, trace_dir):
  import numpy as np
  import tensorflow as tf
  from wm_tf.agent.builder import build_agent
  from wm_tf.config import load_config
  from wm_tf.runtime.environments import inspect_env

  config = load_config(None, size_overrides(SIZES[size]) + ['run.jit=true']
                       + list(overrides))
  spec = inspect_env(ENV_ID)
  agent = build_agent(config, spec)
  batch = synthetic_batch(spec, config.replay.batch_size,
                           config.replay.sequence_length)
  generator = tf.random.Generator.from_seed(0)

  def step():
    seed = tf.cast(generator.make_seeds(1)[:, 0], tf.int32)
    float(agent.learner.train(batch, seed)['actor/loss'])  # waits

  for _ in range(2):
    step()  # compile, warm up
  wall = []
  for _ in range(timed_steps):
    start = time.perf_counter()
    step()
    wall.append(1e3 * (time.perf_counter() - start))
  tf.profiler.experimental.start(trace_dir)
  start = time.perf_counter()
  for _ in range(steps):
    step()
  profiled_ms = 1e3 * (time.perf_counter() - start) / steps
  tf.profiler.experimental.stop()
  groups, busy = group_events(_trace_events(trace_dir), steps)
  flops = train_step_flops(config, spec.observation_dim, spec.action_dim,
                           spec.discrete)['total']
  return {
      'size': size, 'units': SIZES[size], 'overrides': list(overrides),
      'step_ms_median': round(float(np.median(wall)), 2),
      'step_ms_min': round(float(np.min(wall)), 2),
      'profiled_step_ms': round(profiled_ms, 2),
      'gflop_per_step': round(flops / 1e9, 2),
      'thread_busy_ms_per_step': busy,
      # Of the executor threads' wall time (the Python thread, which runs
      # only a few thunks, is one of them: the fraction is a lower bound).
      'thread_busy_fraction': round(
          sum(busy.values()) / (max(len(busy), 1) * profiled_ms), 3),
      'groups': groups,
  }


def format_report(result: dict, top: int) -> str:
  lines = [f"size {result['size']} ({result['units']} units): "
           f"{result['step_ms_median']} ms/step median "
           f"(min {result['step_ms_min']}), {result['profiled_step_ms']} ms "
           f"while profiled; executor threads busy "
           f"{100 * result['thread_busy_fraction']:.0f}% of it",
           f"{'ms/step':>9} {'share':>6} {'thunks/step':>11}  group"]
  for name, g in list(result['groups'].items())[:top]:
    lines.append(f"{g['ms_per_step']:9.2f} {100 * g['share']:5.1f}% "
                 f"{g['count_per_step']:11.1f}  {name}")
  return '\n'.join(lines)


def main(argv):
  del argv
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  if FLAGS.trace_dir:
    result = profile(FLAGS.size, FLAGS.timed_steps, FLAGS.steps, FLAGS.set,
                     FLAGS.trace_dir)
  else:
    with tempfile.TemporaryDirectory(prefix='wm_tf_profile_') as trace_dir:
      result = profile(FLAGS.size, FLAGS.timed_steps, FLAGS.steps, FLAGS.set,
                       trace_dir)
  print(format_report(result, FLAGS.top))
  with open(FLAGS.output, 'w') as f:
    json.dump(result, f, indent=1)
  print(f'wrote {FLAGS.output}')


if __name__ == '__main__':
  app.run(main)
