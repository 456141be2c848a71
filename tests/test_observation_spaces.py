"""Tests for wm_tf/runtime/observation_spaces.py, the key routing of
wm_tf/config/validation.py and uint8 images in the replay."""

import os
import zipfile

import gymnasium as gym
import numpy as np
import pytest

from wm_tf.config import ConfigError, load_config
from wm_tf.config.validation import route_observation_keys
from wm_tf.runtime.environments import UnsupportedEnvironment, spec_from_spaces
from wm_tf.runtime.observation_spaces import (ObservationConverter,
                                              check_observation,
                                              observation_specs)
from wm_tf.runtime.replay import SequenceReplay, list_episode_files, step_spec
from wm_tf.specs import EnvSpec, ObservationSpec

Box, Dict, Discrete = gym.spaces.Box, gym.spaces.Dict, gym.spaces.Discrete
IMAGE = Box(0, 255, (16, 16, 3), np.uint8)
VECTOR = Box(-1, 1, (3,), np.float32)
MIXED = Dict({'image': IMAGE, 'vector': VECTOR, 'mode': Discrete(3)})


def test_a_box_of_floats_is_the_single_key_observation():
  spec = spec_from_spaces('X', Box(-1, 1, (4,), np.float64), Discrete(2))
  assert spec.observations == (ObservationSpec('observation', (4,)),)
  assert spec.observation_dim == 4
  scalar = observation_specs('X', Box(-1, 1, (), np.float32))
  assert scalar == (ObservationSpec('observation', (1,)),)


def test_a_dict_keeps_its_keys_shapes_and_dtypes():
  specs = observation_specs('X', MIXED)
  assert {s.key: (s.shape, s.dtype) for s in specs} == {
      'image': ((16, 16, 3), 'uint8'), 'vector': ((3,), 'float32'),
      'mode': ((3,), 'float32')}
  assert [s.is_image for s in specs] == [s.key == 'image' for s in specs]


def test_the_converter_one_hot_encodes_discrete_and_keeps_uint8():
  convert = ObservationConverter(MIXED)
  rng = np.random.default_rng(0)
  raw = {'image': rng.integers(0, 256, (2, 16, 16, 3)).astype(np.uint8),
         'vector': rng.normal(size=(2, 3)).astype(np.float64),
         'mode': np.array([2, 0])}
  out = convert(raw, (2,))
  np.testing.assert_array_equal(out['mode'], [[0, 0, 1], [1, 0, 0]])
  assert out['image'].dtype == np.uint8 and out['vector'].dtype == np.float32
  np.testing.assert_array_equal(out['image'], raw['image'])
  check_observation(out, convert.specs, (2,))
  shifted = ObservationConverter(Discrete(3, start=5))
  np.testing.assert_array_equal(shifted(np.array(6))['observation'],
                                [0, 1, 0])
  with pytest.raises(ValueError, match=r"key 'image': got float32"):
    check_observation(dict(out, image=out['image'].astype(np.float32)),
                      convert.specs, (2,))


@pytest.mark.parametrize('space, why', [
    (gym.spaces.Tuple((VECTOR, VECTOR)), "key 'observation' has space Tuple"),
    (gym.spaces.MultiBinary(4), "key 'observation' has space MultiBinary"),
    (Box(0, 1, (16, 16, 3), np.float32), 'images must be uint8'),
    (Box(0, 255, (4,), np.uint8), "key 'observation' has space Box"),
    (Dict({'a': VECTOR, 'nested': Dict({'b': VECTOR})}),
     "key 'nested' has space Dict"),
    (Dict({'reward': VECTOR}), "key 'reward' is the name of a step record"),
])
def test_other_spaces_are_refused_naming_the_key_and_what_is_allowed(
    space, why):
  with pytest.raises(UnsupportedEnvironment) as error:
    spec_from_spaces('Env-v0', space, Discrete(2))
  message = str(error.value)
  assert why in message and "'Env-v0'" in message
  assert 'allowed: a float Box of rank 1' in message or 'any key but' in (
      message)
  assert '\n' not in message


def _routing(*overrides):
  spec = EnvSpec('X', observation_specs('X', MIXED), 2, True)
  return route_observation_keys(load_config(None, list(overrides)),
                                spec.observations)


def test_keys_are_routed_by_kind_and_full_regex_match():
  assert _routing() == {'encoder': (('mode', 'vector'), ('image',)),
                        'decoder': (('mode', 'vector'), ('image',))}
  # 'vec' matches 'vector' only in part: not selected.
  routed = _routing('encoder.mlp_keys=vec|mode', 'encoder.cnn_keys=$^',
                    'heads.decoder.mlp_keys=vector')
  assert routed['encoder'] == (('mode',), ())
  # The decoder's cnn_keys default to the encoder's.
  assert routed['decoder'] == (('vector',), ())
  # An image never goes to the MLP, nor a vector to the CNN.
  routed = _routing('encoder.mlp_keys=image|mode', 'encoder.cnn_keys=.*')
  assert routed['encoder'] == (('mode',), ('image',))


def test_routing_errors_name_the_keys_available():
  with pytest.raises(ConfigError) as error:
    _routing('encoder.mlp_keys=image', 'encoder.cnn_keys=vector')
  message = str(error.value)
  assert 'select no observation key' in message
  assert 'image (image [16, 16, 3]), mode (vector [3]), vector (vector [3])' \
      in message
  with pytest.raises(ConfigError, match=r"encoder.mlp_keys.*not a regular"):
    load_config(None, ['encoder.mlp_keys=(unclosed'])
  with pytest.raises(ConfigError, match=r"heads.decoder.cnn_keys.*not a reg"):
    load_config(None, ['heads.decoder.cnn_keys="a("'])


def test_image_sizes_the_cnn_cannot_take_are_a_config_error():
  spec = EnvSpec('X', observation_specs('X', Dict({
      'image': Box(0, 255, (24, 24, 3), np.uint8)})), 2, True)
  with pytest.raises(ConfigError, match=(
      r"key 'image' has images of 24x24.*cnn_min_resolution=4.*8, 16, 32")):
    route_observation_keys(load_config(None, []), spec.observations)
  # 24 = 3 * 2^3: taken with a minimum resolution of 3.
  config = load_config(None, ['encoder.cnn_min_resolution=3'])
  assert route_observation_keys(config, spec.observations)['encoder'] == (
      (), ('image',))


def test_replay_keeps_images_uint8_in_memory_on_disk_and_in_batches(
    tmp_path):
  specs = observation_specs('X', Dict({'image': IMAGE, 'vector': VECTOR}))
  replay = SequenceReplay(step_spec(specs, 2), capacity=40,
                          sequence_length=4, directory=tmp_path)
  images = np.zeros((6, 16, 16, 3), np.uint8)
  for t in range(6):  # a different band per step; compressible
    images[t, 2 * t:2 * t + 3] = 250 - t
  for t in range(6):
    replay.add(0, {'image': images[t], 'vector': np.full(3, t, np.float32),
                   'action': np.zeros(2, np.float32), 'reward': 0.0,
                   'is_first': t == 0, 'is_terminal': False,
                   'is_last': t == 5})
  batch = replay.sample(3)
  assert batch['image'].dtype == np.uint8
  assert batch['image'].shape == (3, 4, 16, 16, 3)
  start = batch['vector'][:, 0, 0].astype(int)
  for b in range(3):
    np.testing.assert_array_equal(batch['image'][b], images[start[b]:][:4])
  (_, _, length, path), = list_episode_files(tmp_path)
  assert length == 6
  with zipfile.ZipFile(path) as archive:
    info = archive.getinfo('image.npy')
    assert info.compress_type == zipfile.ZIP_DEFLATED
    assert info.compress_size < info.file_size
  with np.load(path) as data:
    assert data['image'].dtype == np.uint8
    np.testing.assert_array_equal(data['image'], images)
  loaded = SequenceReplay(step_spec(specs, 2), capacity=40, sequence_length=4)
  assert loaded.load(tmp_path) == 6
  assert loaded.sample(2)['image'].dtype == np.uint8
  assert os.path.getsize(path) < images.nbytes / 2


def test_disk_storage_samples_what_memory_storage_samples(tmp_path):
  specs = observation_specs('X', Dict({'image': IMAGE, 'vector': VECTOR}))
  rng = np.random.default_rng(3)
  buffers = [SequenceReplay(step_spec(specs, 2), capacity=20,
                            sequence_length=4, num_streams=2, seed=5,
                            storage_directory=directory)
             for directory in (None, str(tmp_path / 'storage'))]
  for t in range(30):  # wraps around the 10 steps per stream
    steps = {'image': rng.integers(0, 256, (2, 16, 16, 3)).astype(np.uint8),
             'vector': rng.normal(size=(2, 3)).astype(np.float32),
             'action': np.zeros((2, 2), np.float32),
             'reward': np.zeros(2, np.float32),
             'is_first': np.full(2, t == 0), 'is_terminal': np.zeros(2, bool),
             'is_last': np.zeros(2, bool)}
    for replay in buffers:
      replay.add_batch(steps)
  memory, disk = (replay.sample(6) for replay in buffers)
  for key in memory:
    np.testing.assert_array_equal(disk[key], memory[key])
  stored = np.load(tmp_path / 'storage' / 'image.npy', mmap_mode='r')
  assert stored.dtype == np.uint8 and stored.shape == (2, 10, 16, 16, 3)
  assert sorted(os.listdir(tmp_path / 'storage')) == sorted(
      f'{key}.npy' for key in memory)
