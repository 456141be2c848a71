"""Tracing chosen train steps with the TensorFlow profiler."""

from __future__ import annotations

import contextlib
from typing import Optional, Tuple

import tensorflow as tf


class StepProfiler:
  """Traces train steps START <= s < STOP into `logdir`/plugins/profile/.

  Args:
    logdir: the run's directory.
    steps: (START, STOP), or None to trace nothing.
  """

  def __init__(self, logdir: str, steps: Optional[Tuple[int, int]]):
    self.logdir = logdir
    self.steps = steps
    self.running = False

  def around(self, step: int):
    """A context for train step `step`: a trace if it is one to profile.

    The profiler starts at START and stops at the first step >= STOP.
    """
    if self.steps is None:
      return contextlib.nullcontext()
    start, stop = self.steps
    if not self.running and start <= step < stop:
      tf.profiler.experimental.start(self.logdir)
      self.running = True
    elif self.running and step >= stop:
      self.stop()
    if self.running:
      return tf.profiler.experimental.Trace('train', step_num=step, _r=1)
    return contextlib.nullcontext()

  def stop(self) -> None:
    if self.running:
      tf.profiler.experimental.stop()
      self.running = False
