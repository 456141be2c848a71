"""Tests for wm_tf/agent/builder.py: components get exactly their arguments."""

import inspect

import pytest

from wm_tf.agent import builder
from wm_tf.components.dynamics import DYNAMICS
from wm_tf.components.representation import REPRESENTATIONS, VQRepresentation
from wm_tf.config import load_config
from wm_tf.specs import EnvSpec

SPEC = EnvSpec('Fake-v0', observations=3, action_dim=2, discrete=True)
SMALL = ['encoder.units=8', 'encoder.layers=1',
         'representation_learner.units=8',
         'representation_learner.latent_dim=8',
         'representation_learner.codebook_groups=2', 'dynamics.units=8',
         'dynamics.layers=1', 'heads.reward.units=8', 'heads.continue.units=8',
         'heads.decoder.units=8']


class _Fake:

  def __init__(self, units, layers=1, activation='silu', **kwargs):
    del units, layers, activation, kwargs


def test_exact_arguments_pass():
  builder.check_arguments(_Fake, dict(units=2, layers=1, activation='relu'))


def test_an_argument_the_constructor_does_not_name_is_an_error():
  with pytest.raises(TypeError, match=r"_Fake has no parameter 'width'"):
    builder.check_arguments(_Fake, dict(units=2, layers=1, activation='relu',
                                        width=3))


@pytest.mark.parametrize('missing', ['units', 'layers'])
def test_a_parameter_the_builder_does_not_pass_is_an_error(missing):
  arguments = dict(units=2, layers=1, activation='relu')
  del arguments[missing]
  with pytest.raises(TypeError, match=f"_Fake has the parameter '{missing}'"):
    builder.check_arguments(_Fake, arguments)


@pytest.mark.parametrize('kind', REPRESENTATIONS.names())
def test_every_representation_gets_exactly_its_arguments(kind):
  config = load_config(None, [f'representation_learner.type={kind}'])
  builder.check_arguments(REPRESENTATIONS.get(kind),
                          builder.representation_arguments(config, SPEC))


@pytest.mark.parametrize('kind', DYNAMICS.names())
def test_every_dynamics_model_gets_exactly_its_arguments(kind):
  # The design's defaults: a stateless representation (the recipe's RSSM
  # is its own dynamics), imagination sampling the model.
  config = load_config(None, ['presets=[design]', f'dynamics.type={kind}'])
  builder.check_arguments(DYNAMICS.get(kind),
                          builder.dynamics_arguments(config, latent_dim=4))


class _RenamedVQ(VQRepresentation):
  """The VQ learner with `codebook_size` renamed to `num_codes`."""

  def __init__(self, latent_dim=64, units=256, layers=1, activation='silu',
               num_codes=64, codebook_groups=8, commitment=0.25, **kwargs):
    super().__init__(latent_dim, units, layers, activation, num_codes,
                     codebook_groups, commitment, **kwargs)


def test_a_renamed_parameter_is_caught_when_the_world_model_is_built(
    monkeypatch):
  assert 'num_codes' in inspect.signature(_RenamedVQ).parameters
  monkeypatch.setitem(REPRESENTATIONS._entries, 'vq', _RenamedVQ)
  config = load_config(None, SMALL + ['representation_learner.type=vq',
                                      'representation_learner.codebook_size=5'])
  with pytest.raises(TypeError, match=r"_RenamedVQ has no parameter "
                     r"'codebook_size'"):
    builder.build_world_model(config, SPEC)


def test_the_unrenamed_world_model_builds():
  config = load_config(None, SMALL + ['representation_learner.type=vq',
                                      'representation_learner.codebook_size=5'])
  world_model = builder.build_world_model(config, SPEC)
  assert world_model.representation.codebook_size == 5
