"""Tests for the grouping of profiler events in benchmarks/step_profile.py."""

import pytest

from benchmarks.step_profile import group_events, thunk_group


@pytest.mark.parametrize('name, group', [
    ('MatMul.816', 'matmul/dot'),
    ('bitcast_dot_fusion.4', 'matmul/dot'),
    ('dot.11', 'matmul/dot'),
    ('add_multiply_fusion.98', 'add_multiply_fusion'),
    ('wrapped_reduce-window.443', 'wrapped_reduce-window'),
    ('while', 'while'),
    ('dotted_fusion.2', 'dotted_fusion'),  # 'dot' only as a whole word
])
def test_thunk_group(name, group):
  assert thunk_group(name) == group


def test_group_events_counts_thunks_inside_executor_spans_only():
  # (thread, name, start ms, duration ms); 2 steps.
  events = [
      ('cpu/python', 'EagerExecute', 0.0, 100.0),  # contains the executor
      ('cpu/t1', 'ThunkExecutor::Execute', 0.0, 20.0),
      ('cpu/t1', 'ThunkExecutor::Execute', 50.0, 10.0),
      ('cpu/t2', 'ThunkExecutor::Execute', 5.0, 10.0),
      ('cpu/t1', 'MatMul.1', 1.0, 12.0), ('cpu/t2', 'MatMul.2', 6.0, 6.0),
      ('cpu/t1', 'add_fusion.3', 14.0, 2.0),
      ('cpu/t1', 'add_fusion.4', 52.0, 4.0),
      ('cpu/t1', 'copy.1', 30.0, 1.0),  # between the spans: not a thunk
      ('cpu/t1', 'while.2', 50.5, 9.0),  # control flow: its body counts
      ('cpu/t2', 'MatMul.3', 12.0, 6.0),  # ends after its span
  ]
  groups, busy = group_events(events, steps=2)
  assert busy == {'cpu/t1': 15.0, 'cpu/t2': 5.0}
  assert list(groups) == ['matmul/dot', 'add_fusion']  # by time
  assert groups['matmul/dot'] == {'ms_per_step': 9.0, 'share': 0.75,
                                  'count_per_step': 1.0}
  assert groups['add_fusion'] == {'ms_per_step': 3.0, 'share': 0.25,
                                  'count_per_step': 1.0}
