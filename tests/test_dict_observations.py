"""A Dict-observation environment (uint8 image + float vector) end to end:
training, acting on the env's dict, checkpoint export with one signature
input per key (run from a process without wm_tf), and the replay memory
estimate (`wm_tf.runtime.replay_memory`)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import observation_envs
from conftest import REPO_ROOT, SMALL_OVERRIDES
from wm_tf.config import load_config
from wm_tf.runtime.observation_spaces import ObservationConverter
from wm_tf.runtime.replay import step_spec
from wm_tf.runtime.replay_memory import (ReplayMemoryError,
                                         check_replay_memory)
from wm_tf.specs import vector_observation

RUN = list(SMALL_OVERRIDES) + [
    'env.num_envs=2', 'encoder.cnn_depth=4', 'run.total_env_steps=300',
    'run.prefill_steps=100', 'warmup.steps=0', 'run.train_ratio=0.25',
    'run.eval_every=0', 'run.log_every=100', 'run.histogram_every=0',
    'run.image_every=100', 'replay.capacity=1000']


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  from wm_tf.runtime.trainer import Trainer
  env_id = observation_envs.register()
  logdir = tmp_path_factory.mktemp('dict_run')
  trainer = Trainer(load_config(None, RUN + [f'env.id={env_id}']),
                    str(logdir), progress=False)
  summary = trainer.run()
  return {'trainer': trainer, 'summary': summary, 'logdir': str(logdir),
          'env_id': env_id}


def test_training_reconstructs_each_key_with_finite_losses(trained):
  summary, trainer = trained['summary'], trained['trainer']
  assert summary['perf/train_steps'] > 0
  keys = ('world_model/loss', 'world_model/decoder_nll',
          'world_model/decoder_nll/image', 'world_model/decoder_nll/vector',
          'actor/loss', 'critic/loss')
  for key in keys:
    assert np.isfinite(summary[key]), (key, summary[key])
  # The decoder's loss is the sum of the per-key NLLs (averaged over the
  # same updates, so equal up to rounding).
  np.testing.assert_allclose(
      summary['world_model/decoder_nll'],
      summary['world_model/decoder_nll/image']
      + summary['world_model/decoder_nll/vector'], rtol=1e-4)
  encoder = trainer.agent.world_model.encoder
  assert encoder.vector_keys == ('vector',) and encoder.image_keys == (
      'image',)
  batch = trainer.replay.sample(2)
  assert batch['image'].dtype == np.uint8
  assert batch['image'].shape == (2, 8, 16, 16, 3)


def test_the_act_step_takes_the_env_dict(trained):
  from wm_tf.runtime.collector import PolicyActing
  env = observation_envs.DictObservationEnv()
  raw, _ = env.reset(seed=3)
  convert = ObservationConverter(env.observation_space)
  observation = {k: v[None] for k, v in convert(raw).items()}
  assert observation['image'].dtype == np.uint8
  acting = PolicyActing(trained['trainer'].agent.policy, 1)
  action = acting.act_deterministic(observation, np.array([True]))
  assert action.shape == (1, 2) and action.sum() == 1.0
  with pytest.raises(Exception):  # a missing key is refused by the signature
    acting.act_deterministic({'vector': observation['vector']},
                             np.array([False]))


# Runs in a fresh interpreter that never imports wm_tf.
_SERVE = r"""
import json, sys
import numpy as np
import tensorflow as tf
assert 'wm_tf' not in sys.modules
model = tf.saved_model.load(sys.argv[1])
action = model.signatures['serving_default']
inputs = {k: [v.dtype.name, list(v.shape)]
          for k, v in action.structured_input_signature[1].items()}
rng = np.random.default_rng(0)
state = model.signatures['initial_state'](batch_size=tf.constant(3))['state']
out = action(image=tf.constant(rng.integers(0, 256, (3, 16, 16, 3)), tf.uint8),
             vector=tf.constant(rng.normal(size=(3, 3)), tf.float32),
             state=state, deterministic=tf.constant(True),
             seed=tf.constant([0, 0]))
error = ''
try:
  action(image=tf.zeros((3, 8, 8, 3), tf.uint8), vector=tf.zeros((3, 3)),
         state=state, deterministic=tf.constant(True),
         seed=tf.constant([0, 0]))
except tf.errors.InvalidArgumentError as e:
  error = e.message
keys = model.signatures['metadata']()['observation_keys'].numpy().tolist()
print(json.dumps({'inputs': inputs, 'action': out['action'].numpy().tolist(),
                  'error': error, 'keys': [k.decode() for k in keys]}))
"""


def test_export_takes_one_input_per_key_without_wm_tf(trained, tmp_path):
  from wm_tf.runtime.export import export_run
  trainer = trained['trainer']
  trainer.checkpoints.save(checkpoint_number=1)
  path = export_run(trained['logdir'], str(tmp_path / 'model'))
  result = subprocess.run(
      [sys.executable, '-c', _SERVE, path], cwd=str(tmp_path),
      capture_output=True, text=True, timeout=600,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2',
               PYTHONPATH=''))
  assert result.returncode == 0, result.stderr[-2000:]
  out = json.loads(result.stdout.strip().splitlines()[-1])
  assert out['inputs']['image'] == ['uint8', [None, 16, 16, 3]]
  assert out['inputs']['vector'] == ['float32', [None, 3]]
  assert set(out['inputs']) == {'image', 'vector', 'state', 'deterministic',
                                'seed'}
  assert out['keys'] == ['image', 'vector']
  assert len(out['action']) == 3 and set(out['action']) <= {0, 1}
  assert 'Input image must be uint8 [B, 16, 16, 3]' in out['error']


def test_replay_memory_is_estimated_and_refused_when_too_large():
  images = observation_envs.DictObservationEnv(size=64).observation_space
  spec = step_spec(ObservationConverter(images).specs, 2)
  # Per step: 64*64*3 image + 3 floats + 2 floats action + reward + 3 flags.
  per_step = 64 * 64 * 3 + 12 + 8 + 4 + 3
  line = check_replay_memory(spec, 100_000, available=10 ** 10)
  assert f'{per_step} bytes per step x replay.capacity=100000' in line
  assert '1.1 GiB' in line and 'image 100%' in line
  with pytest.raises(ReplayMemoryError) as error:
    check_replay_memory(spec, 100_000, available=512 * 2 ** 20)
  message = str(error.value)
  assert '512.0 MiB of memory available' in message
  assert f'replay.capacity <= {512 * 2 ** 20 // per_step}' in message
  assert 'image 100%' in message and '\n' not in message
  assert "replay.storage='disk'" in message
  # On disk the buffers are memory-mapped files: stated, not refused.
  assert check_replay_memory(spec, 100_000, available=512 * 2 ** 20,
                             on_disk=True).startswith('replay storage on disk')
  vector = step_spec(vector_observation(4), 2)
  assert 'bytes per step' in check_replay_memory(vector, 1000)


def test_the_trainer_refuses_a_replay_beyond_memory(tmp_path):
  from wm_tf.runtime.trainer import Trainer
  env_id = observation_envs.register()
  with pytest.raises(ReplayMemoryError, match='replay.capacity <='):
    # A run long enough to fill the buffer (it holds at most the run).
    Trainer(load_config(None, RUN + [f'env.id={env_id}',
                                     'replay.capacity=10000000000',
                                     'run.total_env_steps=10000000000']),
            str(tmp_path), progress=False)


def test_onnx_and_tflite_take_the_keys_and_act_as_tensorflow(trained,
                                                             tmp_path):
  pytest.importorskip('tf2onnx')
  pytest.importorskip('onnxruntime')
  from wm_tf.runtime import portable_export
  from wm_tf.runtime.export import export_run_formats
  # Each file is checked to act as TensorFlow does on probe inputs (uint8
  # images, float vectors) when written.
  paths = export_run_formats(trained['logdir'], str(tmp_path / 'portable'),
                             formats=('onnx', 'tflite'))
  rng = np.random.default_rng(1)
  inputs = {'image': rng.integers(0, 256, (4, 16, 16, 3)).astype(np.uint8),
            'vector': rng.normal(size=(4, 3)).astype(np.float32)}
  onnx_out = portable_export.run_onnx(paths['onnx'], inputs)
  tflite_out = portable_export.run_tflite(paths['tflite'], inputs)
  np.testing.assert_array_equal(onnx_out['action'], tflite_out['action'])
  assert onnx_out['action'].shape == (4,)


def _gif_sizes(logdir, tag):
  """(step, width, height, frames) of each GIF image summary `tag`."""
  import io
  from PIL import Image, ImageSequence
  from tensorboard.backend.event_processing import event_accumulator
  accumulator = event_accumulator.EventAccumulator(
      logdir, size_guidance={event_accumulator.IMAGES: 0})
  accumulator.Reload()
  if tag not in accumulator.Tags()['images']:
    return []
  out = []
  for event in accumulator.Images(tag):
    gif = Image.open(io.BytesIO(event.encoded_image_string))
    assert gif.format == 'GIF'
    out.append((event.step, gif.width, gif.height,
                sum(1 for _ in ImageSequence.Iterator(gif))))
  return out


def test_tensorboard_gets_open_loop_and_episode_videos(trained):
  trainer = trained['trainer']
  # Open loop, every run.image_every = 100 env steps once training ran:
  # rows of true | predicted | error, 16 x 16 each.
  videos = _gif_sizes(trained['logdir'], 'world_model/open_loop/image')
  assert videos, 'no open-loop video written'
  for _, width, height, frames in videos:
    assert width == 3 * 16 and height % 16 == 0 and 1 <= height // 16 <= 4
    assert frames >= 2
  # An evaluation writes its first episode as the policy saw it: 20 steps
  # and the final observation, at most 21 frames (GIF merges repeats).
  trainer.evaluate()
  trainer.writer.flush()
  episodes = _gif_sizes(trained['logdir'], 'eval/episode/image')
  assert [e[0] for e in episodes] == [trainer.env_steps]
  _, width, height, frames = episodes[0]
  assert (width, height) == (16, 16) and 2 <= frames <= 21
  # Vector keys get no video.
  assert not _gif_sizes(trained['logdir'], 'eval/episode/vector')


@pytest.mark.parametrize('overrides, want', [
    (['run.total_env_steps=500'], 500),  # the run never stores more
    (['replay.capacity=300'], 300),
    (['replay.capacity=10', 'env.num_envs=2', 'replay.sequence_length=8'],
     16),  # one sequence per stream at least
])
def test_replay_capacity_is_what_the_run_can_use(overrides, want):
  from wm_tf.runtime.trainer import _replay_capacity
  assert _replay_capacity(load_config(None, overrides)) == want
