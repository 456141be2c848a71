"""Tests for wm_tf/agent/warmup.py: what each train step updates.

Schedules are checked against a recording stand-in learner (which calls
they make) and, for 'phased', against a real learner's optimizer step
counters (how many updates each part got).
"""

import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import SMALL_OVERRIDES, make_batch
from wm_tf.agent.builder import build_agent
from wm_tf.agent.warmup import (WARMUPS, GradualWarmup, Phase, PhasedWarmup,
                                SimpleWarmup)
from wm_tf import config as config_lib
from wm_tf.config import ConfigError, load_config


@pytest.fixture
def eager():
  """tf.functions run eagerly: no tracing, so small tests stay fast."""
  tf.config.run_functions_eagerly(True)
  yield
  tf.config.run_functions_eagerly(False)


class RecordingLearner:
  """Records which update ran; reads the warmup's real ratio at each call."""

  def __init__(self):
    self.calls = []
    self.actor_critic = types.SimpleNamespace(
        warmup_real_ratio=tf.Variable(-1.0))

  def train_world_model(self, batch):
    self.calls.append(('world_model', batch))
    return {}

  def train(self, batch, seed):
    self.calls.append(
        ('full', float(self.actor_critic.warmup_real_ratio.numpy())))
    return {'critic/loss': tf.constant(0.0)}

  def update_function(self, updates):
    def run(batch, seed):
      self.calls.append(updates)
      return {}
    return run


def test_simple_trains_world_model_only_before_steps():
  schedule = SimpleWarmup(steps=100)
  learner = RecordingLearner()
  for step in (0, 99, 100, 150):
    schedule.update(learner, lambda: 'batch', lambda: 'seed', step)
  assert [c[0] for c in learner.calls] == ['world_model', 'world_model',
                                           'full', 'full']


def test_gradual_real_ratio_falls_linearly_from_start_to_zero():
  schedule = GradualWarmup(steps=200, real_ratio=0.8)
  want = {0: 0.8, 50: 0.6, 100: 0.4, 199: 0.8 / 200, 200: 0.0, 1000: 0.0}
  for step, ratio in want.items():
    assert schedule.critic_real_ratio(step) == pytest.approx(ratio)
  learner = RecordingLearner()
  metrics = schedule.update(learner, lambda: 'batch', lambda: 'seed', 50)
  # The learner saw the ratio when it trained, and it is reported.
  assert learner.calls == [('full', pytest.approx(0.6))]
  assert float(metrics['warmup/real_ratio']) == pytest.approx(0.6)
  assert schedule.real_terms and not SimpleWarmup().real_terms


PHASES = [Phase(100, world_model_updates=2, actor_updates=0, critic_updates=1),
          Phase(200, world_model_updates=0, actor_updates=1, critic_updates=2),
          Phase(300, world_model_updates=1, actor_updates=3, critic_updates=0)]


@pytest.mark.parametrize('step, counts', [
    (0, (2, 0, 1)), (99, (2, 0, 1)),
    (100, (0, 1, 2)), (199, (0, 1, 2)),
    (200, (1, 3, 0)), (299, (1, 3, 0)),
    (300, (1, 1, 1)), (10_000, (1, 1, 1)),
])
def test_phased_counts_and_calls_at_boundaries(step, counts):
  schedule = PhasedWarmup(phases=PHASES)
  assert schedule.counts(step) == counts
  calls = schedule.calls(step)
  # Each part is updated in exactly its count of calls, first calls first.
  for part, count in enumerate(counts):
    name = ('world_model', 'actor', 'critic')[part]
    assert [getattr(c, name) for c in calls] == [True] * count + [False] * (
        len(calls) - count)
  learner = RecordingLearner()
  schedule.update(learner, lambda: 'batch', lambda: 'seed', step)
  assert learner.calls == calls


def _iterations(learner):
  return tuple(int(o.iterations.numpy()) for o in (
      learner.world_model.optimizer, learner.actor_critic.actor_optimizer,
      learner.actor_critic.critic_optimizer))


def test_phased_update_counts_on_a_real_learner(cartpole_spec, eager,
                                                tmp_path):
  """Optimizer step counters grow by the phase's counts per train step."""
  phases = ('[{end_step: 100, world_model_updates: 2, critic_updates: 1},'
            ' {end_step: 200, world_model_updates: 0, actor_updates: 1,'
            ' critic_updates: 2}]')
  keras.utils.set_random_seed(0)
  agent = build_agent(load_config(None, list(SMALL_OVERRIDES) + [
      'warmup.type=phased', f'warmup.phases={phases}']), cartpole_spec)
  learner = agent.learner
  rng = np.random.default_rng(0)
  for step, counts in ((99, (2, 0, 1)), (100, (0, 1, 2)), (200, (1, 1, 1))):
    before = _iterations(learner)
    wm_before = [v.numpy().copy() for v in learner.world_model.trainable_variables]
    metrics = agent.warmup.update(
        learner, lambda: make_batch(cartpole_spec, rng),
        lambda: tf.constant(rng.integers(0, 1000, 2), tf.int32), step)
    after = _iterations(learner)
    assert tuple(a - b for a, b in zip(after, before)) == counts
    wm_moved = any(not np.array_equal(b, v.numpy()) for b, v in zip(
        wm_before, learner.world_model.trainable_variables))
    assert wm_moved == (counts[0] > 0)
    assert float(metrics['learner/nonfinite']) == 0.0
  # The compiled updates of part subsets do not stop checkpointing.
  tf.train.Checkpoint(learner=learner).save(str(tmp_path / 'ckpt'))


def test_registry_matches_config_choices():
  assert WARMUPS.names() == ('gradual', 'phased', 'simple')


@pytest.mark.parametrize('overrides, message', [
    (['warmup.type=phased'], "'warmup.phases' is empty"),
    (['warmup.phases=[{end_step: 10}]'],
     "warmup.phases and warmup.type='simple' conflict"),
    (['warmup.type=phased', 'warmup.phases=[{critic_updates: 1}]'],
     r"'warmup.phases\[0\]' is missing required key\(s\) end_step"),
    (['warmup.type=phased', 'warmup.phases=[{end_step: soon}]'],
     r"'warmup.phases\[0\].end_step' has value 'soon'; allowed: an integer"),
    (['warmup.type=phased', 'warmup.phases={end_step: 10}'],
     "allowed: a list of mappings with keys end_step, world_model_updates, "
     "actor_updates, critic_updates"),
    (['warmup.type=phased',
      'warmup.phases=[{end_step: 10}, {end_step: 10}]'],
     r"'warmup.phases\[1\].end_step' has value 10; allowed: an integer > 10"),
    (['warmup.type=phased', 'warmup.phases=[{end_step: 10, actor: 1}]'],
     r"Unknown config key 'warmup.phases\[0\].actor'"),
    (['warmup.type=phased',
      'warmup.phases=[{end_step: 10, critic_updates: -1}]'],
     r"'warmup.phases\[0\].critic_updates' has value -1; allowed: an "
     "integer >= 0"),
    (['warmup.type=phased', 'warmup.phases=[{end_step: 10}]',
      'optimizers.type=single'],
     "warmup.type='phased' and optimizers.type='single' conflict"),
    (['warmup.type=gradual', 'warmup.steps=0'],
     "warmup.type='gradual' and warmup.steps=0 conflict"),
    (['warmup.real_ratio=1.5'],
     "'warmup.real_ratio' has value 1.5; allowed: a number in"),
    (['warmup.real_ratio=0.5', 'warmup.critic_real_return_mix=0.5'],
     'warmup.critic_real_return_mix and warmup.real_ratio conflict'),
])
def test_config_errors_name_the_key(overrides, message):
  with pytest.raises(ConfigError, match=message):
    load_config(None, overrides)


def test_phases_round_trip_through_yaml(tmp_path):
  from wm_tf.config import to_yaml
  config = load_config(None, [
      'warmup.type=phased',
      'warmup.phases=[{end_step: 100, actor_updates: 2}, {end_step: 200}]'])
  path = tmp_path / 'config.yaml'
  path.write_text(to_yaml(config))
  again = load_config(str(path))
  assert again.warmup == config.warmup
  assert again.warmup.phases[0].actor_updates == 2
  assert again.warmup.phases[1].world_model_updates == 1


def test_saved_configs_with_the_old_real_ratio_key_still_load():
  """warmup.critic_real_return_mix, the old name of warmup.real_ratio, in
  the config.yaml of an older run."""
  config = config_lib.from_dict({'warmup': {'type': 'gradual',
                                            'critic_real_return_mix': 0.3}})
  assert config.warmup.real_ratio == 0.3
  assert 'critic_real_return_mix' not in config_lib.to_dict(config)['warmup']
