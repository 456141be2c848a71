"""The run's records beside its checkpoints: evaluations.csv and TensorBoard.

A run killed after its newest checkpoint has written evaluations and
TensorBoard events of a stretch of training that its resumed run repeats
from that checkpoint. `EvaluationLog.keep_until` and `mark_session_start`
take those records back, so that a resumed run's curves show one value
per env step, each from the run that the checkpoints continue.
"""

from __future__ import annotations

import csv
import io
import os
import socket
import time
from typing import Dict, List, Mapping

from wm_tf.runtime.checkpoints import write_text_atomically

EVALUATIONS_FILE = 'evaluations.csv'


class EvaluationLog:
  """`logdir/evaluations.csv`: one row per evaluation, by env step.

  Columns are the keys of the first row appended; `env_steps` is required.

  Args:
    logdir: the run directory.
  """

  def __init__(self, logdir: str):
    self.path = os.path.join(logdir, EVALUATIONS_FILE)

  def rows(self) -> List[Dict[str, float]]:
    """The rows on disk as floats (env_steps as int), in file order.

    A last line cut short by a kill (fewer fields than the header) is left
    out.
    """
    if not os.path.exists(self.path):
      return []
    with open(self.path, newline='') as f:
      lines = list(csv.reader(f))
    if not lines:
      return []
    header, rows = lines[0], []
    for fields in lines[1:]:
      if len(fields) != len(header):
        continue
      try:
        row = {key: float(value) for key, value in zip(header, fields)}
      except ValueError:
        continue
      row['env_steps'] = int(row['env_steps'])
      rows.append(row)
    return rows

  def append(self, row: Mapping[str, float]) -> None:
    """Adds one row (and the header, for the first)."""
    new = not os.path.exists(self.path)
    with open(self.path, 'a') as f:
      if new:
        f.write(','.join(row) + '\n')
      f.write(','.join(str(v) for v in row.values()) + '\n')

  def keep_until(self, env_steps: int) -> List[Dict[str, float]]:
    """Drops the rows after `env_steps` and any repeated step; returns the
    rows kept. The file is rewritten atomically, or removed if none is
    left."""
    rows = self.rows()
    kept: List[Dict[str, float]] = []
    for row in rows:
      if row['env_steps'] <= env_steps and (
          not kept or row['env_steps'] > kept[-1]['env_steps']):
        kept.append(row)
    if not kept:
      if os.path.exists(self.path):
        os.remove(self.path)
      return []
    if len(kept) != len(rows):
      out = io.StringIO()
      out.write(','.join(kept[0]) + '\n')
      for row in kept:
        out.write(','.join(str(v) for v in row.values()) + '\n')
      write_text_atomically(self.path, out.getvalue())
    return kept


def mark_session_start(logdir: str, step: int) -> str:
  """Writes a TensorBoard event file that starts a session at `step`.

  The file holds one `SessionLog.START` event at `step`. TensorBoard takes
  the first such event of a run as its start, and each later one as a
  restart: it discards the events of earlier files whose step is >= the
  restart's (its orphaned-data purge, the mechanism TensorFlow 1 used for
  restarts). TensorBoard reads a run's files in name order; this file's
  name sorts after every file written before now and before the file of a
  summary writer opened after this call in the same process (TensorFlow
  names it `...<seconds>.<host>.<pid>.<n>.v2` with n >= 0; this one ends
  `.0.session`).

  Returns:
    The path written.
  """
  # Imported here: the trainer alone writes these.
  from tensorboard.compat.proto import event_pb2
  from tensorboard.summary.writer.record_writer import RecordWriter
  now = time.time()
  path = os.path.join(logdir, 'events.out.tfevents.%010d.%s.%d.0.session' % (
      now, socket.gethostname(), os.getpid()))
  with open(path, 'wb') as f:
    writer = RecordWriter(f)
    writer.write(event_pb2.Event(
        wall_time=now, file_version='brain.Event:2').SerializeToString())
    writer.write(event_pb2.Event(
        wall_time=now, step=int(step), session_log=event_pb2.SessionLog(
            status=event_pb2.SessionLog.START)).SerializeToString())
    f.flush()
    os.fsync(f.fileno())
  return path
