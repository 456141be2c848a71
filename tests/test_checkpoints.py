"""Tests for wm_tf/runtime/checkpoints.py and the Trainer's resume and
non-finite safety net (in-process, small models, no XLA)."""

import glob
import os
import shutil
import warnings

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import (event_accumulator,
                                                 plugin_event_accumulator)

from conftest import SMALL_OVERRIDES
from wm_tf.config import load_config
from wm_tf.runtime import checkpoints, run_log
from wm_tf.runtime.replay import list_episode_files
from wm_tf.runtime.trainer import (NonFiniteLossError, Trainer,
                                   update_was_nonfinite)

# 60 env steps, updates from step 16 at ratio 0.5 (22 updates), the actor
# and critic from step 30; a checkpoint every 5 train steps, 2 kept.
RUN = list(SMALL_OVERRIDES) + [
    'run.total_env_steps=60', 'run.prefill_steps=16', 'warmup.steps=30',
    'run.train_ratio=0.5', 'run.eval_every=0', 'run.log_every=20',
    'run.histogram_every=0', 'run.image_every=0', 'run.checkpoint_every=5',
    'run.checkpoints_to_keep=2', 'replay.capacity=1000']


def _config(*extra):
  return load_config(None, RUN + list(extra))


def _trainer(logdir, *extra, **kwargs):
  return Trainer(_config(*extra), str(logdir), progress=False, **kwargs)


def _agent_variables(trainer):
  """{name: value} of every model, optimizer and learner variable."""
  agent = trainer.agent
  learner = agent.learner
  out = {}
  for name in ('world_model', 'actor', 'critic', 'slow_critic'):
    for v in getattr(agent, name).variables:
      out[f'{name}/{v.path}'] = v.numpy()
  for part, optimizer in learner.layout.optimizers.items():
    for v in optimizer.variables:
      out[f'{part}_optimizer/{v.path}'] = v.numpy()
  for v in learner.variables:  # tf.Variables the learner holds itself
    out[f'learner/{v.name}'] = v.numpy()
  return out


def _episode_files(logdir):
  return list_episode_files(os.path.join(logdir, 'episodes'))


def _episode_digests(logdir):
  """Each stored episode file loaded (it must load) and reduced to its
  bytes. A file holds a whole episode, or a part of one: its first step
  starts the episode or continues the file before it of the same stream."""
  digests = []
  open_streams = set()
  for _, stream, length, path in _episode_files(logdir):
    with np.load(path) as data:
      assert len(data['is_last']) == length, path
      assert data['is_first'][0] or stream in open_streams, path
      assert not data['is_last'][:-1].any(), path
      (open_streams.add if not data['is_last'][-1] else
       open_streams.discard)(stream)
      digests.append(b''.join(data[k].tobytes() for k in sorted(data.files)))
  return digests


def _stored(logdir):
  """(steps, finished episodes) in the run's episode files."""
  steps = episodes = 0
  for _, _, length, path in _episode_files(logdir):
    with np.load(path) as data:
      steps += length
      episodes += int(data['is_last'][-1])
  return steps, episodes


@pytest.fixture(scope='module')
def finished(tmp_path_factory):
  """A finished 60-step run: (logdir, its trainer)."""
  logdir = tmp_path_factory.mktemp('checkpoints') / 'run'
  trainer = _trainer(logdir)
  trainer.run()
  return str(logdir), trainer


# ---------------------------------------------------------------------------
# Saving and restoring.
# ---------------------------------------------------------------------------


def test_run_keeps_the_newest_checkpoints(finished):
  logdir, trainer = finished
  steps = trainer.train_steps
  assert abs(steps - 22) <= 1
  names = sorted(os.path.basename(p) for p in glob.glob(
      os.path.join(logdir, 'checkpoints', 'ckpt-*.index')))
  # Saved every 5 train steps and at the end; the newest 2 kept.
  saved = sorted(set(range(5, steps + 1, 5)) | {steps})
  assert names == sorted(f'ckpt-{n}.index' for n in saved[-2:])
  assert tf.train.latest_checkpoint(
      os.path.join(logdir, 'checkpoints')).endswith(f'ckpt-{steps}')


def test_resume_restores_every_variable_and_the_run_state(finished):
  logdir, trainer = finished
  before = _agent_variables(trainer)
  # Trained weights, not the initial ones (else restoring proves nothing):
  # a new run of the same seed starts from the initial ones.
  fresh = _trainer(os.path.join(logdir, '..', 'fresh'))
  initial = _agent_variables(fresh)
  changed = [k for k in before if not np.array_equal(before[k], initial[k])]
  for part in ('world_model/', 'actor/', 'critic/', 'slow_critic/',
               'world_model_optimizer/', 'actor_optimizer/'):
    assert any(k.startswith(part) for k in changed), part
  # The slow critic's hidden layers, which its object graph misses.
  assert any(k.startswith('slow_critic/') and '/mlp/' in k for k in changed)

  resumed = _trainer(logdir)
  after = _agent_variables(resumed)
  assert sorted(after) == sorted(before)
  differing = [k for k in before if not np.array_equal(before[k], after[k])]
  assert differing == []
  assert resumed.resumed_from.number == trainer.train_steps
  for name in ('env_steps', 'episodes', 'updates_due', 'last_log'):
    assert getattr(resumed, name) == getattr(trainer, name), name
  assert resumed.env_steps == 60
  # Generators continue where they stopped.
  np.testing.assert_array_equal(resumed.seeds.state.numpy(),
                                trainer.seeds.state.numpy())
  assert resumed.rng.random() == trainer.rng.random()
  assert resumed.replay.rng.random() == trainer.replay.rng.random()
  # Every stored step went back into the replay, and the counters are
  # those of the data on disk.
  assert resumed.reloaded_steps == _stored(logdir)[0] == 60
  assert resumed.episodes == _stored(logdir)[1] == trainer.episodes


def test_a_finished_run_has_every_counted_step_on_disk(finished):
  logdir, trainer = finished
  _episode_digests(logdir)  # every file loads; parts follow each other
  assert _stored(logdir) == (trainer.env_steps, trainer.episodes)


def test_a_new_directory_starts_fresh(tmp_path):
  trainer = _trainer(tmp_path / 'run')
  assert trainer.resumed_from is None and trainer.env_steps == 0
  assert trainer.reloaded_steps == 0


def test_checkpoint_holds_the_config_and_named_values(finished):
  logdir, trainer = finished
  reader = tf.train.load_checkpoint(
      tf.train.latest_checkpoint(os.path.join(logdir, 'checkpoints')))
  keys = reader.get_variable_to_shape_map()
  config_key, = [k for k in keys if k.startswith('values/config/')]
  assert reader.get_tensor(config_key).decode() == trainer.config_text
  env_key, = [k for k in keys if k.startswith('values/env_steps/')]
  assert reader.get_tensor(env_key) == 60


# ---------------------------------------------------------------------------
# Damaged checkpoints.
# ---------------------------------------------------------------------------


def _copy_run(src, dst):
  shutil.copytree(src, dst)
  return str(dst)


def _damage(prefix, part):
  if part == 'data':
    path, = glob.glob(prefix + '.data-*')
    data = bytearray(open(path, 'rb').read())
    for i in range(0, len(data), 97):
      data[i] ^= 0xFF
    open(path, 'wb').write(bytes(data))
  elif part == 'index':
    with open(prefix + '.index', 'r+b') as f:
      f.truncate(20)
  else:
    for path in glob.glob(prefix + '.*'):
      os.remove(path)


@pytest.mark.parametrize('part', ['data', 'index'])
def test_damaged_newest_checkpoint_falls_back_to_the_one_before(
    finished, tmp_path, part):
  logdir = _copy_run(finished[0], tmp_path / 'run')
  directory = os.path.join(logdir, 'checkpoints')
  manager = checkpoints.RunCheckpoint(directory, finished[1].agent)
  newest, previous = manager.candidates()
  _damage(newest, part)
  with pytest.warns(RuntimeWarning, match=(
      f'{os.path.basename(newest)} cannot be used: its files are damaged.*'
      f'falling back to {os.path.basename(previous)}')):
    resumed = _trainer(logdir)
  assert resumed.resumed_from.path == previous
  assert resumed.train_steps == checkpoints.checkpoint_number(previous)
  # The damaged files are set aside, and TF's state names the good one.
  assert tf.train.latest_checkpoint(directory) == previous
  assert glob.glob(os.path.join(
      directory, 'corrupt-' + os.path.basename(newest) + '.*'))
  if part == 'data':  # training goes on and saves again
    resumed.run()
    assert tf.train.latest_checkpoint(directory).endswith(
        f'ckpt-{resumed.train_steps}')


def test_deleted_newest_checkpoint_is_no_candidate(finished, tmp_path):
  logdir = _copy_run(finished[0], tmp_path / 'run')
  manager = checkpoints.RunCheckpoint(
      os.path.join(logdir, 'checkpoints'), finished[1].agent)
  newest, previous = manager.candidates()
  _damage(newest, 'missing')
  with warnings.catch_warnings():
    warnings.simplefilter('error', RuntimeWarning)
    resumed = _trainer(logdir)
  assert resumed.resumed_from.path == previous


def test_fallback_goes_on_over_checkpoints_the_state_file_omits(
    finished, tmp_path):
  """The directory, not TF's state file, says what is on disk: with the
  state file naming only the newest (as after an earlier fallback), a
  damaged newest falls back to the older files, and again after that."""
  logdir = _copy_run(finished[0], tmp_path / 'run')
  directory = os.path.join(logdir, 'checkpoints')
  manager = checkpoints.RunCheckpoint(directory, finished[1].agent)
  newest = manager.candidates()[0]
  older = []
  for n in (3, 7):  # copies of the newest under older numbers
    older.append(os.path.join(directory, f'ckpt-{n}'))
    for path in glob.glob(newest + '.*'):
      shutil.copy(path, older[-1] + path[len(newest):])
  with open(os.path.join(directory, 'checkpoint'), 'w') as f:
    f.write(f'model_checkpoint_path: "{os.path.basename(newest)}"\n'
            f'all_model_checkpoint_paths: "{os.path.basename(newest)}"\n')
  _damage(newest, 'data')
  with pytest.warns(RuntimeWarning, match='falling back'):
    first = _trainer(logdir)
  second_newest = first.resumed_from.path
  assert checkpoints.checkpoint_number(second_newest) < checkpoints.\
      checkpoint_number(newest)
  _damage(second_newest, 'index')
  with pytest.warns(RuntimeWarning, match='falling back'):
    second = _trainer(logdir)
  assert second.resumed_from.path in older + [
      p for p in manager.candidates() if p != second_newest]
  assert checkpoints.checkpoint_number(second.resumed_from.path) < \
      checkpoints.checkpoint_number(second_newest)


def test_the_only_checkpoint_damaged_says_there_is_no_older_one(
    finished, tmp_path):
  logdir = _copy_run(finished[0], tmp_path / 'run')
  manager = checkpoints.RunCheckpoint(
      os.path.join(logdir, 'checkpoints'), finished[1].agent)
  newest, previous = manager.candidates()
  _damage(previous, 'missing')
  _damage(newest, 'data')
  with pytest.warns(RuntimeWarning, match='no older checkpoint is left'):
    with pytest.raises(checkpoints.NoUsableCheckpoint,
                       match=r'None of the 1 checkpoint\(s\).*damaged'):
      _trainer(logdir)


def test_every_checkpoint_damaged_is_an_error(finished, tmp_path):
  logdir = _copy_run(finished[0], tmp_path / 'run')
  manager = checkpoints.RunCheckpoint(
      os.path.join(logdir, 'checkpoints'), finished[1].agent)
  candidates = manager.candidates()
  for prefix in candidates:
    _damage(prefix, 'index')
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    with pytest.raises(checkpoints.NoUsableCheckpoint) as error:
      _trainer(logdir)
  message = str(error.value)
  assert 'None of the 2 checkpoint(s)' in message
  for prefix in candidates:
    assert f'{os.path.basename(prefix)}: its files are damaged' in message


def test_a_checkpoint_of_another_model_is_named_as_such(finished, tmp_path):
  """Intact files that do not fit the agent: the message says so, not
  'damaged'."""
  logdir = _copy_run(finished[0], tmp_path / 'run')
  wider = _trainer(tmp_path / 'other', 'critic.units=48')
  manager = checkpoints.RunCheckpoint(
      os.path.join(logdir, 'checkpoints'), wider.agent)
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    with pytest.raises(checkpoints.NoUsableCheckpoint) as error:
      manager.restore_newest()
  assert 'does not fit the agent that config.yaml builds' in str(error.value)
  assert 'damaged' not in str(error.value)


def test_unreadable_state_file_is_rewritten(finished, tmp_path):
  logdir = _copy_run(finished[0], tmp_path / 'run')
  state = os.path.join(logdir, 'checkpoints', 'checkpoint')
  with open(state, 'w') as f:
    f.write('model_checkpoint_path: {{{ not a proto')
  resumed = _trainer(logdir)
  assert resumed.train_steps == finished[1].train_steps
  assert tf.train.latest_checkpoint(os.path.dirname(state)).endswith(
      f'ckpt-{resumed.train_steps}')


def test_relative_logdir_resumes_from_any_working_directory(
    tmp_path, monkeypatch):
  """The default --logdir is relative: a run started in one directory
  resumes there with the same relative path, and elsewhere with another
  path to the same directory."""
  work = tmp_path / 'work'
  work.mkdir()
  monkeypatch.chdir(work)
  trainer = _trainer('logdir/run')
  trainer.run()
  again = _trainer('logdir/run')
  assert again.resumed_from.number == trainer.train_steps
  other = tmp_path / 'elsewhere'
  other.mkdir()
  monkeypatch.chdir(other)
  from_elsewhere = _trainer(os.path.join('..', 'work', 'logdir', 'run'))
  assert from_elsewhere.resumed_from.number == trainer.train_steps
  assert tf.train.latest_checkpoint(
      str(work / 'logdir' / 'run' / 'checkpoints')).endswith(
          f'ckpt-{trainer.train_steps}')


# ---------------------------------------------------------------------------
# The saved config.
# ---------------------------------------------------------------------------


def test_config_differences_lists_changed_added_and_removed_keys():
  saved = {'run': {'jit': True, 'seed': 1}, 'actor': {'entropy': 0.1}}
  current = {'run': {'jit': False, 'seed': 1}, 'critic': {'units': 3}}
  assert checkpoints.config_differences(saved, current) == [
      "actor.entropy: 0.1 -> '(absent)'",
      "critic.units: '(absent)' -> 3",
      'run.jit: True -> False',
  ]


def test_changed_config_is_refused_with_the_differing_keys(finished):
  logdir, _ = finished
  saved = open(os.path.join(logdir, 'config.yaml')).read()
  with pytest.raises(checkpoints.ConfigMismatch) as error:
    _trainer(logdir, 'actor.entropy=0.5', 'run.total_env_steps=80')
  message = str(error.value)
  assert 'actor.entropy: 0.003 -> 0.5' in message or (
      'actor.entropy' in message and '0.5' in message)
  assert 'run.total_env_steps: 60 -> 80' in message
  assert '--allow_config_change' in message
  assert open(os.path.join(logdir, 'config.yaml')).read() == saved


def test_allowed_config_change_resumes_and_replaces_the_config(finished,
                                                               tmp_path):
  logdir = _copy_run(finished[0], tmp_path / 'run')
  files_before = _episode_digests(logdir)
  trainer = _trainer(logdir, 'run.total_env_steps=100',
                     allow_config_change=True)
  assert trainer.config_changes == ['run.total_env_steps: 60 -> 100']
  assert load_config(os.path.join(logdir, 'config.yaml')) == trainer.config
  assert trainer.env_steps == 60
  trainer.run()
  assert trainer.env_steps == 100
  digests = _episode_digests(logdir)
  # Old episodes kept as they were; no episode stored twice.
  assert digests[:len(files_before)] == files_before
  assert len(set(digests)) == len(digests)
  indices = [index for index, _, _, _ in _episode_files(logdir)]
  assert indices == list(range(len(indices)))


def test_keys_added_to_the_schema_since_the_run_take_their_defaults(
    finished, tmp_path):
  logdir = _copy_run(finished[0], tmp_path / 'run')
  path = os.path.join(logdir, 'config.yaml')
  text = open(path).read()
  # A run saved before run.max_nonfinite_in_a_row existed.
  lines = [line for line in text.splitlines()
           if not line.strip().startswith('max_nonfinite_in_a_row:')]
  open(path, 'w').write('\n'.join(lines) + '\n')
  config = load_config(None, RUN)
  assert checkpoints.check_saved_config(logdir, config) == []


# ---------------------------------------------------------------------------
# Non-finite losses.
# ---------------------------------------------------------------------------


def test_update_was_nonfinite_reads_the_flag_or_the_losses():
  assert update_was_nonfinite({'learner/nonfinite': tf.constant(1.0),
                               'world_model/loss': tf.constant(2.0)})
  assert not update_was_nonfinite({'learner/nonfinite': 0.0,
                                   'world_model/grad_norm': np.nan})
  # Without the learner's flag, any '*/loss' metric decides.
  assert update_was_nonfinite({'actor/loss': np.inf, 'critic/loss': 1.0})
  assert update_was_nonfinite({'world_model/loss': tf.constant(np.nan)})
  assert not update_was_nonfinite({'world_model/loss': 1.0,
                                   'actor/entropy': np.nan})


def test_nonfinite_updates_are_skipped_then_stop_the_run(tmp_path):
  """Updates 3 and 6 are non-finite (isolated: counted, training goes on);
  from update 13 on every one is, and the third in a row stops the run.

  The non-finite calls report what the learner's guard reports for a
  skipped update and leave the weights alone.
  """
  logdir = str(tmp_path / 'run')
  # World model only (warmup past the end): one function to trace.
  trainer = _trainer(logdir, 'run.max_nonfinite_in_a_row=3',
                     'run.log_every=1', 'warmup.steps=1000')
  learner = trainer.agent.learner
  calls = [0]

  def wrap(fn):
    def wrapped(*args):
      calls[0] += 1
      if calls[0] in (3, 6) or calls[0] >= 13:
        return {'world_model/loss': tf.constant(1.0),
                'learner/nonfinite': tf.constant(1.0)}
      return fn(*args)
    return wrapped

  learner.train_world_model = wrap(learner.train_world_model)
  learner.train = wrap(learner.train)
  with pytest.raises(NonFiniteLossError) as error:
    trainer.run()
  message = str(error.value)
  assert '3 updates in a row had a non-finite loss' in message
  assert 'run.max_nonfinite_in_a_row=3' in message
  assert calls[0] == 15 and trainer.nonfinite_total == 5
  # 10 real updates: checkpoints at 5 and 10, none after the first bad one.
  directory = os.path.join(logdir, 'checkpoints')
  newest = tf.train.latest_checkpoint(directory)
  assert newest.endswith('ckpt-10') and 'ckpt-10' in message
  assert sorted(os.path.basename(p) for p in glob.glob(
      os.path.join(directory, 'ckpt-*.index'))) == [
          'ckpt-10.index', 'ckpt-5.index']
  # Skips were logged, and the averaged losses stayed finite.
  trainer.writer.flush()
  acc = event_accumulator.EventAccumulator(
      logdir, size_guidance={event_accumulator.TENSORS: 0})
  acc.Reload()
  count = [float(tf.make_ndarray(e.tensor_proto))
           for e in acc.Tensors('train/nonfinite_updates')]
  assert count == sorted(count) and count[-1] >= 2
  assert all(np.isfinite(float(tf.make_ndarray(e.tensor_proto)))
             for e in acc.Tensors('world_model/loss'))
  # The checkpoint restores, with finite weights.
  resumed = _trainer(logdir, 'run.max_nonfinite_in_a_row=3',
                     'run.log_every=1', 'warmup.steps=1000')
  assert resumed.train_steps == 10
  for v in resumed.agent.world_model.variables:
    assert np.all(np.isfinite(v.numpy())), v.path


def test_rssm_run_restores_in_a_process_that_built_other_agents(tmp_path):
  """Keras numbers unnamed layers per process (the GRU's seed_generator_N):
  a checkpoint must not depend on how many agents were built before."""
  logdir = tmp_path / 'rssm'
  rssm = ('representation_learner.type=rssm', 'run.total_env_steps=30',
          'run.checkpoint_every=0')
  first = _trainer(logdir, *rssm)
  first.run()
  saved = _agent_variables(first)
  _trainer(tmp_path / 'other', *rssm)  # shifts the automatic numbering
  resumed = _trainer(logdir, *rssm)
  assert resumed.resumed_from is not None
  restored = _agent_variables(resumed)
  # Compared by position: the automatic names themselves differ.
  assert len(restored) == len(saved)
  for (name, value), expected in zip(restored.items(), saved.values()):
    np.testing.assert_array_equal(value, expected, err_msg=name)


# ---------------------------------------------------------------------------
# What a run killed after its checkpoint left behind.
# ---------------------------------------------------------------------------


def _tensorboard_steps(logdir, tag):
  """Steps of `tag` as TensorBoard shows them (orphaned data purged)."""
  acc = plugin_event_accumulator.EventAccumulator(
      logdir, size_guidance={plugin_event_accumulator.TENSORS: 0},
      purge_orphaned_data=True)
  acc.Reload()
  return [e.step for e in acc.Tensors(tag)]


def test_resume_counts_the_data_stored_after_the_checkpoint(tmp_path):
  """A run that went on after its checkpoint (its newer checkpoints lost,
  as at a kill): the resumed counters are the data on disk, the updates
  owed for it are trained, and evaluations and TensorBoard events after
  the checkpoint are taken back and written once again."""
  extra = ['run.eval_every=20', 'run.eval_episodes=1',
           'run.checkpoints_to_keep=10', 'run.log_every=10']
  logdir = str(tmp_path / 'run')
  first = _trainer(logdir, *extra)
  first.run()
  directory = os.path.join(logdir, 'checkpoints')
  kept = checkpoints.list_checkpoints(directory)
  target = [p for p in kept if checkpoints.checkpoint_number(p) == 10][0]
  for prefix in kept:
    if checkpoints.checkpoint_number(prefix) > 10:
      _damage(prefix, 'missing')
  rows = run_log.EvaluationLog(logdir).rows()
  assert [r['env_steps'] for r in rows] == [20, 40, 60]

  resumed = _trainer(logdir, *extra)
  assert resumed.resumed_from.path == target
  reader = tf.train.load_checkpoint(target)
  saved_env, = [reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
                if k.startswith('values/env_steps/')]
  assert saved_env < 60
  assert (resumed.env_steps, resumed.episodes) == _stored(logdir) == (
      60, first.episodes)
  assert resumed.dropped_evaluations == 2
  assert [r['env_steps'] for r in resumed.eval_history] == [20]
  train_before = resumed.train_steps
  summary = resumed.run()
  # The updates owed at train_ratio 0.5 for the steps after the checkpoint.
  assert resumed.train_steps - train_before == int(0.5 * (60 - saved_env))
  assert [r['env_steps'] for r in run_log.EvaluationLog(logdir).rows()] == [
      20, 60]
  assert np.isfinite(summary['eval/return'])
  assert _tensorboard_steps(logdir, 'eval/return') == [20, 60]
  steps = _tensorboard_steps(logdir, 'perf/train_steps')
  assert steps == sorted(set(steps))
  _episode_digests(logdir)


def test_rerun_of_a_finished_run_reports_its_last_evaluation(tmp_path):
  extra = ['run.eval_every=30', 'run.eval_episodes=1']
  logdir = str(tmp_path / 'run')
  first = _trainer(logdir, *extra)
  done = first.run()
  again = _trainer(logdir, *extra)
  summary = again.run()
  assert again.train_steps == first.train_steps
  assert summary['eval/return'] == done['eval/return']
  assert [r['env_steps'] for r in run_log.EvaluationLog(logdir).rows()] == [
      30, 60]


def test_export_and_evaluation_fall_back_over_a_damaged_checkpoint(
    finished, tmp_path):
  from wm_tf.runtime import evaluation, export
  logdir = _copy_run(finished[0], tmp_path / 'run')
  newest, previous = checkpoints.list_checkpoints(
      os.path.join(logdir, 'checkpoints'))
  path, = glob.glob(newest + '.data-*')
  with open(path, 'r+b') as f:
    f.truncate(os.path.getsize(path) // 2)
  with pytest.warns(RuntimeWarning, match='damaged.*falling back'):
    restored = export.restore_run(logdir)
  assert restored.checkpoint_path == previous
  with pytest.warns(RuntimeWarning, match='damaged.*falling back'):
    loaded = evaluation.policy_from_run(os.path.relpath(logdir))
  assert loaded.source == previous


@pytest.mark.parametrize('env_id, want', [
    ('CartPole-v1', 'logdir/CartPole-v1-seed3'),
    ('dmc:cartpole_balance', 'logdir/dmc_cartpole_balance-seed3'),
    ('wm_tf/Dice-v0', 'logdir/wm_tf_Dice-v0-seed3'),
])
def test_default_logdir_is_one_directory(env_id, want):
  from wm_tf.runtime.checkpoints import default_logdir
  assert default_logdir(env_id, 3) == want
