"""Tests for wm_tf/config/presets.py and the shipped configs built from it."""

import os
import subprocess
import sys

import pytest
import yaml

from wm_tf.config import ConfigError, from_dict, load_config
from wm_tf.config import presets as presets_lib
from wm_tf.config.coercion import to_dict
from wm_tf.config.loading import CONFIGS_DIR

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = sorted(n for n in os.listdir(CONFIGS_DIR) if n.endswith('.yaml'))
# What an environment's config may set: its id, budget and evaluation
# cadence, and the presets it is built from.
ENV_KEYS = {'presets': None,
            'env': {'id', 'max_episode_steps', 'pixels', 'size',
                    'action_repeat', 'kwargs', 'atari', 'dmc'},
            'run': {'total_env_steps', 'eval_every', 'eval_episodes'}}

FAKE = {'a': {'actor': {'units': 8, 'entropy': 0.5}, 'seed': 1},
        'b': {'actor': {'units': 16}, 'critic': {'units': 4}}}


def test_presets_merge_in_order_and_the_file_last():
  data = presets_lib.apply_presets(
      {'presets': ['a', 'b'], 'critic': {'units': 2}}, FAKE)
  # b's actor.units over a's, a's entropy kept beside it, the file last.
  assert data == {'actor': {'units': 16, 'entropy': 0.5}, 'seed': 1,
                  'critic': {'units': 2}}
  assert presets_lib.apply_presets({'presets': ['b', 'a']}, FAKE)[
      'actor']['units'] == 8


def test_merge_leaves_its_inputs_unchanged():
  base = {'x': {'y': 1}}
  presets_lib.merge(base, {'x': {'z': 2}})
  assert base == {'x': {'y': 1}}


@pytest.mark.parametrize('value, message', [
    (['size_SS'], "Unknown preset 'size_SS' .*Did you mean 'size_S'"),
    ('size_S', 'must be a list of preset names'),
    ([1], 'must be a list of preset names'),
])
def test_bad_presets_are_config_errors(value, message):
  with pytest.raises(ConfigError, match=message):
    from_dict({'presets': value})


@pytest.mark.parametrize('name', sorted(presets_lib.load_presets()))
def test_every_preset_validates_on_its_own(name):
  from_dict({'presets': [name]})


@pytest.mark.parametrize('name', SHIPPED)
def test_shipped_configs_hold_only_what_is_the_environments(name):
  with open(os.path.join(CONFIGS_DIR, name)) as f:
    data = yaml.safe_load(f)
  for section, value in data.items():
    assert section in ENV_KEYS, f'{name}: {section} is not an env key'
    if ENV_KEYS[section] is not None:
      assert set(value) <= ENV_KEYS[section], (name, section, set(value))
  # The only preset an env config names is its size.
  assert all(p.startswith('size_') for p in data.get('presets', [])), name


def _algorithm(config):
  """The resolved config without what is the environment's."""
  data = to_dict(config)
  del data['env']
  for key in ENV_KEYS['run']:
    del data['run'][key]
  return data


def test_every_shipped_config_resolves_to_the_one_recipe():
  """Vector, pixel, discrete and continuous envs: the same algorithm keys,
  those of the defaults at the shipped size."""
  recipe = _algorithm(load_config(None, ['presets=[size_S]']))
  for name in SHIPPED:
    assert _algorithm(load_config(os.path.join(CONFIGS_DIR, name))) == recipe, name


def test_the_design_preset_restores_a_default_the_recipe_changed():
  """Each key of `design` differs from the schema default (the preset is
  not stale), and it gives the design document's values."""
  design = presets_lib.load_presets()['design']
  defaults = to_dict(load_config(None))
  for section, values in design.items():
    for key, value in values.items():
      default = defaults[section][key]
      if isinstance(value, dict):
        assert any(default[k] != v for k, v in value.items()), (section, key)
      else:
        assert default != value, (section, key)
  config = load_config(None, ['presets=[design]'])
  assert config.representation_learner.type == 'mlp'
  assert config.imagination.mode == 'backprop'
  assert config.imagination.sample_dynamics
  assert config.actor.gradient == 'dynamics'
  assert config.optimizers.critic.learning_rate == 3e-5
  assert config.warmup.steps == 5000 and config.replay.sequence_length == 64


def test_presets_can_be_overridden_from_the_command_line():
  config = load_config('configs/cartpole.yaml',
                       ['presets=[size_XS, discrete_dyna]',
                        'actor.units=33'])
  assert config.critic.units == 64 and config.actor.units == 33
  assert config.env.id == 'CartPole-v1'


def test_the_size_presets_grow():
  presets = presets_lib.load_presets()
  units = [presets[f'size_{s}']['actor']['units'] for s in 'XS S M L'.split()]
  assert units == sorted(units) and len(set(units)) == 4


def test_print_config_prints_the_resolved_config(tmp_path):
  out = subprocess.run(
      [sys.executable, '-m', 'launch.train', '--config=configs/pendulum.yaml',
       '--set=actor.entropy=0.01', '--print_config'],
      cwd=tmp_path, capture_output=True, text=True, timeout=120,
      env=dict(os.environ, PYTHONPATH=REPO))
  assert out.returncode == 0, out.stderr
  printed = from_dict(yaml.safe_load(out.stdout))
  assert printed == load_config('configs/pendulum.yaml',
                                ['actor.entropy=0.01'])
  assert 'presets' not in yaml.safe_load(out.stdout)
  assert not os.listdir(tmp_path), 'printing the config started a run'


def test_the_resolved_config_round_trips_without_presets():
  config = load_config('configs/cartpole.yaml')
  assert from_dict(to_dict(config)) == config

