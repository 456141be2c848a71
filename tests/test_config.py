"""Tests for wm_tf/config/: defaults, YAML + overrides, validation errors."""

import dataclasses
import os

import pytest
import yaml

from wm_tf import config as config_lib
from wm_tf.config import Config, ConfigError, load_config


def _write(tmp_path, text, name='run.yaml'):
  path = tmp_path / name
  path.write_text(text)
  return str(path)


def _error(overrides=(), path=None) -> str:
  with pytest.raises(ConfigError) as info:
    load_config(path, overrides)
  message = str(info.value)
  assert '\n' not in message, 'one message on one line'
  return message


# ---------------------------------------------------------------------------
# Loading.
# ---------------------------------------------------------------------------


def test_defaults_load():
  config = load_config()
  # Config() leaves the by-type defaults unset: the RSSM's KL weight, 1.
  assert config == dataclasses.replace(
      Config(), representation_learner=dataclasses.replace(
          Config().representation_learner, beta=1.0))
  assert config.env.id == 'CartPole-v1'
  assert config.returns.type == 'lambda'
  assert config.returns.lambda_ == 0.95
  assert config.heads.continue_.units == 256
  assert config.dynamics.fixed_std == 1e-4
  assert config.optimizers.actor.learning_rate == 1e-4
  assert config.env.max_episode_steps is None


CONFIG_DIR = os.path.join(os.path.dirname(__file__), os.pardir, 'configs')


def test_repository_config_loads():
  config = load_config(os.path.join(CONFIG_DIR, 'cartpole.yaml'))
  assert config.env.id == 'CartPole-v1'
  assert config.run.total_env_steps == 10_000


def test_pendulum_config_is_the_measured_one():
  """The settings docs/results.md's Pendulum results were measured with."""
  config = load_config(os.path.join(CONFIG_DIR, 'pendulum.yaml'))
  assert config.env.id == 'Pendulum-v1'
  assert config.run.total_env_steps == 15_000
  assert config.representation_learner.type == 'rssm'
  assert config.world_model.predict_continue is True
  assert config.imagination.mode == 'dyna'
  assert config.actor.gradient == 'auto'


def test_yaml_then_overrides(tmp_path):
  path = _write(tmp_path, """
returns:
  lambda: 0.9
  type: gae
heads:
  continue: {units: 16}
  reward: {units: 48, layers: 3}
run:
  total_env_steps: 5000
  train_ratio: 1
optimizers:
  world_model: {learning_rate: 0.001}
""")
  config = load_config(path, [
      'returns.lambda=0.5',
      'heads.continue.units=64',
      'actor.entropy=0.001',
      'env.max_episode_steps=200',
      'run.jit=false',
      'heads.continue.units=65',  # the last override of a key wins
  ])
  assert config.returns.lambda_ == 0.5
  assert config.returns.type == 'gae'  # from the file, untouched
  assert config.heads.continue_.units == 65
  assert config.heads.reward.units == 48 and config.heads.reward.layers == 3
  assert config.heads.decoder.units == 256  # default
  assert config.run.total_env_steps == 5000
  assert config.run.train_ratio == 1.0
  assert isinstance(config.run.train_ratio, float)  # int -> float
  assert config.optimizers.world_model.learning_rate == 0.001
  assert config.optimizers.actor.learning_rate == 1e-4  # default
  assert config.actor.entropy == 0.001
  assert config.env.max_episode_steps == 200
  assert config.run.jit is False


def test_integral_floats_become_ints(tmp_path):
  config = load_config(None, ['run.total_env_steps=10000.0',
                              'replay.capacity=2.0e+5'])
  assert config.run.total_env_steps == 10_000
  assert isinstance(config.run.total_env_steps, int)
  assert config.replay.capacity == 200_000
  assert isinstance(config.replay.capacity, int)


@pytest.mark.parametrize('text, key, want', [
    ('run.total_env_steps=1e4', 'run.total_env_steps', 10_000),
    ('replay.capacity=2e5', 'replay.capacity', 200_000),
    ('actor.entropy=1e-3', 'actor.entropy', 1e-3),
    ('dynamics.fixed_std=1e-4', 'dynamics.fixed_std', 1e-4),
])
def test_exponent_notation_without_dot(text, key, want):
  """PyYAML (YAML 1.1) reads '1e4' as a string; the config takes it anyway."""
  value = config_lib.lookup(load_config(None, [text]), key)
  assert value == want
  assert type(value) is type(want)


def test_exponent_notation_in_yaml_file(tmp_path):
  path = _write(tmp_path, 'run: {total_env_steps: 1e4}\n'
                          'dynamics: {fixed_std: 1e-4}\n')
  config = load_config(path)
  assert config.run.total_env_steps == 10_000
  assert isinstance(config.run.total_env_steps, int)
  assert config.dynamics.fixed_std == 1e-4


@pytest.mark.parametrize('override', ['run.total_env_steps=2.5e0',
                                      'run.total_env_steps=nan',
                                      'run.total_env_steps=ten'])
def test_non_integral_strings_rejected_for_ints(override):
  message = _error([override])
  assert "'run.total_env_steps'" in message and 'an integer' in message


def test_optional_accepts_null(tmp_path):
  config = load_config(None, ['env.max_episode_steps=50',
                              'env.max_episode_steps=null'])
  assert config.env.max_episode_steps is None


def test_empty_yaml_file_gives_defaults(tmp_path):
  assert load_config(_write(tmp_path, '')) == load_config(None)


# ---------------------------------------------------------------------------
# Errors.
# ---------------------------------------------------------------------------


def test_unknown_key_names_path_suggests_and_lists():
  message = _error(['actor.entropi=0.1'])
  assert "'actor.entropi'" in message
  assert "Did you mean 'entropy'?" in message
  for allowed in ('activation', 'entropy', 'gradient', 'layers', 'max_std',
                  'min_std', 'return_normalization', 'units'):
    assert allowed in message


def test_unknown_nested_key_in_yaml_file(tmp_path):
  path = _write(tmp_path, 'heads:\n  continu: {units: 8}\n')
  message = _error(path=path)
  assert "'heads.continu'" in message
  assert "Did you mean 'continue'?" in message
  assert 'decoder' in message and 'reward' in message


def test_unknown_top_level_key():
  message = _error(['critc.units=3'])
  assert "'critc'" in message
  assert "Did you mean 'critic'?" in message
  assert 'representation_learner' in message  # the allowed top-level keys


def test_unknown_key_without_close_match_lists_allowed():
  message = _error(['run.zzzzzz=1'])
  assert "'run.zzzzzz'" in message
  assert 'Did you mean' not in message
  assert 'total_env_steps' in message and 'prefill_steps' in message


@pytest.mark.parametrize('override, key, allowed', [
    ('encoder.units=wide', 'encoder.units', 'an integer'),
    ('encoder.units=1.5', 'encoder.units', 'an integer'),
    ('encoder.units=true', 'encoder.units', 'an integer'),
    ('run.jit=3', 'run.jit', 'true or false'),
    ('actor.entropy=[1, 2]', 'actor.entropy', 'a number'),
    ('actor.entropy=true', 'actor.entropy', 'a number'),
    ('env.id=3', 'env.id', 'a string'),
    ('env.max_episode_steps=abc', 'env.max_episode_steps',
     'an integer or null'),
])
def test_wrong_type_names_key_and_allowed_type(override, key, allowed):
  message = _error([override])
  assert repr(key) in message
  assert allowed in message


def test_scalar_where_section_expected():
  message = _error(['heads=3'])
  assert "'heads'" in message and 'mapping' in message


def test_override_below_a_scalar():
  message = _error(['run.jit.deep=1'])
  assert "'run.jit'" in message and 'true or false' in message


@pytest.mark.parametrize('override, key, values', [
    ('env.vectorization=threads', 'env.vectorization', ["'sync'", "'async'"]),
    ('returns.type=td', 'returns.type',
     ["'lambda'", "'monte_carlo'", "'n_step'", "'gae'"]),
    ('dynamics.std=adaptive', 'dynamics.std', ["'learned'", "'fixed'"]),
    ('actor.gradient=ppo', 'actor.gradient', ["'dynamics'", "'reinforce'"]),
])
def test_literal_outside_set_lists_allowed_values(override, key, values):
  message = _error([override])
  assert repr(key) in message
  assert repr(override.split('=')[1]) in message
  for value in values:
    assert value in message


@pytest.mark.parametrize('override, key, allowed', [
    ('returns.lambda=1.5', 'returns.lambda', 'a number in [0, 1]'),
    ('env.num_envs=0', 'env.num_envs', 'an integer >= 1'),
    ('dynamics.fixed_std=0.0', 'dynamics.fixed_std', 'a number > 0'),
    ('replay.sequence_length=1', 'replay.sequence_length', 'an integer >= 2'),
    ('imagination.gamma=-0.1', 'imagination.gamma', 'a number in [0, 1]'),
])
def test_range_violation(override, key, allowed):
  message = _error([override])
  assert repr(key) in message
  assert override.split('=')[1] in message
  assert allowed in message


def test_conflicting_min_max_std():
  message = _error(['dynamics.min_std=0.5', 'dynamics.max_std=0.2'])
  assert 'dynamics.min_std' in message and 'dynamics.max_std' in message


def test_malformed_override_without_equals():
  message = _error(['run.jit'])
  assert "'run.jit'" in message
  assert 'key.path=value' in message
  with pytest.raises(ConfigError, match='key.path=value'):
    config_lib.parse_override('returns.lambda 0.5')


def test_override_with_empty_key():
  assert "'=3'" in _error(['=3'])


def test_parse_override_reads_yaml_values():
  assert config_lib.parse_override('a.b=0.5') == ('a.b', 0.5)
  assert config_lib.parse_override(' a.b =true') == ('a.b', True)
  assert config_lib.parse_override('a=[1, 2]') == ('a', [1, 2])
  assert config_lib.parse_override('a=x=y') == ('a', 'x=y')


def test_missing_file(tmp_path):
  path = str(tmp_path / 'nope.yaml')
  message = _error(path=path)
  assert repr(path) in message
  assert 'does not exist' in message


def test_file_that_is_not_a_mapping(tmp_path):
  path = _write(tmp_path, '- a\n- b\n')
  assert repr(path) in _error(path=path)


# ---------------------------------------------------------------------------
# Round trip.
# ---------------------------------------------------------------------------


def test_to_yaml_from_dict_round_trip(tmp_path):
  config = load_config(None, [
      'returns.lambda=0.5', 'returns.type=n_step', 'heads.continue.units=64',
      'world_model.loss_scales.continue=0.25', 'actor.entropy=0.003',
      'optimizers.critic.learning_rate=0.00002', 'env.max_episode_steps=77',
      'run.jit=false', 'representation_learner.type=mlp',
      'dynamics.std=fixed', 'seed=11'])
  text = config_lib.to_yaml(config)
  data = yaml.safe_load(text)
  # YAML spells the keyword fields without their trailing '_'.
  assert data['returns']['lambda'] == 0.5
  assert data['heads']['continue']['units'] == 64
  assert 'lambda_' not in data['returns']
  assert config_lib.from_dict(data) == config
  assert load_config(_write(tmp_path, text)) == config
  # And the defaults survive too (their tiny floats included).
  defaults = load_config(None)
  assert config_lib.from_dict(yaml.safe_load(config_lib.to_yaml(defaults))
                              ) == defaults


def test_from_dict_validates_ranges():
  data = config_lib.to_dict(Config())
  data['returns']['lambda'] = 2.0
  with pytest.raises(ConfigError, match='returns.lambda'):
    config_lib.from_dict(data)


def test_lookup_uses_yaml_names():
  config = load_config(None, ['returns.lambda=0.25'])
  assert config_lib.lookup(config, 'returns.lambda') == 0.25
  assert config_lib.lookup(config, 'heads.continue.units') == 256

