"""Tests for benchmarks/alternatives.py: which alternatives run on which
environment, and the table merged from several reports.

The module defines absl flags that benchmarks.step_profile defines too, so
it is imported in a subprocess here (it needs no TensorFlow for this).
"""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Each env as docs/choosing_a_design.md's table measured it (its config
# before the one recipe), or as shipped (the recipe).
BEFORE_THE_RECIPE = {
    'cartpole': ['presets=[size_S, discrete_dyna]'],
    'pendulum': ['presets=[size_S, continuous_rssm]'],
}
RESOLVE_ALL = """
import json, sys
from benchmarks import alternatives
extra = json.loads(sys.argv[1])
out = {}
for env in ('cartpole', 'pendulum'):
  earlier = {}
  for a in alternatives.ALTERNATIVES:
    r = earlier[a.name] = alternatives.resolve(a, env, extra.get(env, ()),
                                               earlier)
    out[env + ' ' + a.name] = [r.status, r.same_as, r.message]
print(json.dumps(out))
"""


def _python(*args) -> str:
  done = subprocess.run([sys.executable] + list(args), cwd=ROOT,
                        capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  return done.stdout


def test_resolve_marks_baselines_duplicates_and_refusals():
  out = json.loads(_python('-c', RESOLVE_ALL, json.dumps(BEFORE_THE_RECIPE)))
  status = {k: v[0] for k, v in out.items()}
  # CartPole's config uses dyna with the signed real actor term.
  assert status['cartpole dyna'] == 'same_as_baseline'
  assert status['cartpole dyna_positive'] == 'ok'
  # Pendulum does not: 'dyna' there already has the default 'positive'.
  assert status['pendulum dyna'] == 'ok'
  assert out['pendulum dyna_positive'][:2] == ['duplicate', 'dyna']
  assert 'is the config of dyna on pendulum' in out['pendulum dyna_positive'][2]
  assert status['pendulum dynamics_gradient'] == 'same_as_baseline'
  assert status['cartpole reinforce'] == 'same_as_baseline'
  # The RSSM refuses the dynamics family, naming the keys.
  assert status['pendulum deterministic'] == 'refused'
  assert "dynamics.type='deterministic'" in out['pendulum deterministic'][2]
  assert status['cartpole deterministic'] == 'ok'
  # Every alternative resolves on both environments, and only declared
  # equalities are skipped: nothing else is a duplicate.
  names = {k.split(' ', 1)[1] for k in out}
  assert len(out) == 2 * len(names)
  assert [k for k, s in status.items() if s == 'duplicate'] == [
      'pendulum dyna_positive']


def test_on_the_recipe_its_own_choices_are_the_baseline():
  out = json.loads(_python('-c', RESOLVE_ALL, '{}'))
  status = {k: v[0] for k, v in out.items()}
  for env in ('cartpole', 'pendulum'):
    for name in ('rssm', 'dyna', 'dyna_positive'):
      assert status[f'{env} {name}'] == 'same_as_baseline', (env, name)
    assert status[f'{env} mlp'] == 'ok'
    assert status[f'{env} mixture'] == 'refused'  # the RSSM is the dynamics


def _learning(final, steps, reached, seeds):
  return {'status': 'ok', 'message': '', 'seeds_completed': seeds,
          'seeds_reaching_threshold': reached,
          'steps_to_threshold_median': steps, 'final_return_median': final,
          'update_ms_median': 80.0}


def _report(env, rows):
  return {'meta': {'envs': [env]}, 'noise': None, 'alternatives': [
      {'family': family, 'alternative': name, 'when': 'w',
       'envs': {env: entry}} for family, name, entry in rows]}


def test_table_from_merges_reports_by_alternative(tmp_path):
  cartpole = _report('cartpole', [
      ('baseline', 'baseline', {'status': 'ok', 'message': '',
                                'learning': _learning(500.0, 3500, 2, 2)}),
      ('imagination', 'dyna', {'status': 'same_as_baseline', 'message': 'm'}),
      ('imagination', 'dyna_positive', {
          'status': 'ok', 'message': '',
          'learning': _learning(250.5, None, 0, 2)})])
  pendulum = _report('pendulum', [
      ('baseline', 'baseline', {'status': 'ok', 'message': '',
                                'learning': _learning(-145.1, 3000, 1, 1)}),
      ('imagination', 'dyna', {'status': 'ok', 'message': '',
                               'learning': _learning(-160.0, 4000, 1, 1)}),
      ('imagination', 'dyna_positive', {
          'status': 'duplicate', 'message': 'same', 'same_as': 'dyna'}),
      ('acting', 'uncertainty', {'status': 'refused',
                                 'message': 'Config keys a and b conflict.'})])
  paths = []
  for name, report in (('c', cartpole), ('p', pendulum)):
    paths.append(str(tmp_path / f'{name}.json'))
    with open(paths[-1], 'w') as f:
      json.dump(report, f)
  table = _python('-m', 'benchmarks.alternatives',
                  '--table_from=' + ','.join(paths)).splitlines()
  rows = {line.split(' | ')[1]: line.split(' | ') for line in table
          if line.startswith('| ') and ' --- ' not in line}
  assert rows['alternative'][5:] == [
      'CartPole steps to 475', 'CartPole final', 'Pendulum steps to -200',
      'Pendulum final |']
  assert rows['baseline'][5:] == ['3500 (2/2)', '500.0', '3000 (1/1)',
                                  '-145.1 |']
  assert rows['dyna'][5:] == ['= baseline', '= baseline', '4000 (1/1)',
                              '-160.0 |']
  assert rows['dyna_positive'][5:] == ['– (0/2)', '250.5', '= dyna',
                                       '= dyna |']
  # A row only one report has: the other env is 'not run'; a refusal
  # points to its message under the table.
  assert rows['uncertainty'][5:7] == ['not run', 'not run']
  assert rows['uncertainty'][7] == 'refused [2]'
  assert '[2] Config keys a and b conflict.' in table


def _timing(ms, ratio):
  return {'env': 'cartpole', 'status': 'ok', 'message': '',
          'ms_per_train_step': {'median': ms, 'relative_iqr': 0.02},
          'ms_per_act_step': {'median': ms / 100, 'relative_iqr': 0.03},
          'train_ratio_to_baseline': ratio, 'act_ratio_to_baseline': ratio,
          'load_before': [1.0, 1.0, 1.0], 'load_after': [1.2, 1.0, 1.0]}


def test_timing_from_reports_an_earlier_runs_timings(tmp_path):
  """--timing_from: the ms columns come from --timing_only reports (here
  one of both envs, then one that times the baseline again), for the env
  asked for only; a report without that env is refused by name."""
  timing_report = {
      'meta': {'envs': ['cartpole', 'pendulum']}, 'noise': None,
      'alternatives': [
          {'family': 'baseline', 'alternative': 'baseline', 'when': 'w',
           'envs': {'cartpole': {'status': 'ok', 'timing': _timing(40.0, 1.0),
                                 'timing_repeat': _timing(41.0, 1.01)},
                    'pendulum': {'status': 'ok',
                                 'timing': _timing(90.0, 1.0)}}},
          {'family': 'imagination', 'alternative': 'dyna_positive',
           'when': 'w', 'envs': {'cartpole': {
               'status': 'ok', 'timing': _timing(52.0, 1.3)}}}]}
  path = tmp_path / 'timing.json'
  path.write_text(json.dumps(timing_report))
  # A second report, timing one alternative again: it replaces the first's.
  again = tmp_path / 'again.json'
  again.write_text(json.dumps({
      'meta': {'envs': ['cartpole']}, 'noise': None, 'alternatives': [
          {'family': 'baseline', 'alternative': 'baseline', 'when': 'w',
           'envs': {'cartpole': {'status': 'ok',
                                 'timing': _timing(38.0, 1.0)}}}]}))
  out = _python('-m', 'benchmarks.alternatives', '--envs=cartpole',
                '--only=baseline,dyna_positive', '--existing_only',
                f'--timing_from={path},{again}', f'--output={tmp_path}',
                '--name=r', '--set=' + BEFORE_THE_RECIPE['cartpole'][0])
  rows = {line.split(' | ')[1]: line.split(' | ') for line in out.splitlines()
          if line.startswith('| ') and ' --- ' not in line}
  assert rows['baseline'][3:5] == ['38 (x1.00)', '0.4 (x1.00)']
  assert rows['dyna_positive'][3:5] == ['52 (x1.30)', '0.5 (x1.30)']
  report = json.loads((tmp_path / 'r.json').read_text())
  baseline = report['alternatives'][0]['envs']['cartpole']
  assert baseline['timing_repeat']['ms_per_train_step']['median'] == 41.0
  assert report['meta']['timing_from'] == [str(path), str(again)]
  timing_report['meta']['envs'] = ['pendulum']
  path.write_text(json.dumps(timing_report))
  done = subprocess.run(
      [sys.executable, '-m', 'benchmarks.alternatives', '--envs=cartpole',
       '--existing_only', f'--timing_from={path}', f'--output={tmp_path}'],
      cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert done.returncode != 0
  assert "the report has no env ['cartpole']" in done.stderr


RECYCLE = """
import json, os, sys
from benchmarks import alternatives
output = sys.argv[1]
tasks = [['pendulum', 'deterministic', f'deterministic {i}'] for i in range(5)]
results = alternatives.run_timing(tasks, output, 1, (), 1, 0, None, False,
                                  tasks_per_worker=2)
given = {}
for name in sorted(os.listdir(os.path.join(output, 'timing'))):
  if name.endswith('.json'):
    with open(os.path.join(output, 'timing', name)) as f:
      given[name] = [t[2] for t in json.load(f)['tasks']]
print(json.dumps({'given': given,
                  'status': {k[1]: r['status'] for k, r in results.items()}}))
"""


def test_timing_workers_are_recycled_after_tasks_per_worker(tmp_path):
  """Each worker process times at most tasks_per_worker alternatives (the
  compiled programs of one process exhaust its memory mappings); every task
  is still timed once, in order. Refused alternatives keep this cheap."""
  out = json.loads(_python('-c', RECYCLE, str(tmp_path)).splitlines()[-1])
  assert out['given'] == {
      'worker0-0.json': ['deterministic 0', 'deterministic 1'],
      'worker1-0.json': ['deterministic 2', 'deterministic 3'],
      'worker2-0.json': ['deterministic 4']}
  assert out['status'] == {f'deterministic {i}': 'refused' for i in range(5)}
