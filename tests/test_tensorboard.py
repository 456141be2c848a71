"""What a training run shows in TensorBoard, read back with TensorBoard's
own EventAccumulator: scalars, histograms, open-loop images and a profiler
trace; and wm_tf/runtime/tensorboard_images.py on its own."""

import glob
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator

from conftest import REPO_ROOT, SMALL_OVERRIDES
from wm_tf.agent.builder import build_agent
from wm_tf.config import load_config
from wm_tf.runtime import tensorboard_images
from wm_tf.runtime.environments import EnvSpec

RUN = list(SMALL_OVERRIDES) + [
    'run.total_env_steps=200', 'run.prefill_steps=50', 'warmup.steps=100',
    'run.train_ratio=0.5', 'run.log_every=50', 'run.histogram_every=50',
    'run.image_every=100', 'run.eval_every=200', 'run.eval_episodes=1',
]
PROFILE = (5, 8)


@pytest.fixture(scope='module')
def run(tmp_path_factory):
  """One CartPole run of 200 env steps (75 updates) with everything on."""
  logdir = str(tmp_path_factory.mktemp('tensorboard') / 'run')
  args = [f'--set={o}' for o in RUN]
  result = subprocess.run(
      [sys.executable, '-m', 'launch.train', f'--logdir={logdir}',
       '--noprogress', f'--profile_steps={PROFILE[0]},{PROFILE[1]}', *args],
      cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  acc = event_accumulator.EventAccumulator(
      logdir, size_guidance={event_accumulator.TENSORS: 0})
  acc.Reload()
  return logdir, acc


def _plugin_tags(acc, plugin):
  return {tag for tag in acc.Tags()['tensors']
          if acc.SummaryMetadata(tag).plugin_data.plugin_name == plugin}


def test_scalars_cover_losses_returns_entropy_grad_norms_and_speed(run):
  _, acc = run
  scalars = _plugin_tags(acc, 'scalars')
  expected = {
      # every world-model loss term, and the total
      'world_model/loss', 'world_model/dynamics_nll', 'world_model/reward_nll',
      'world_model/continue_nll', 'world_model/decoder_nll',
      # actor and critic
      'actor/loss', 'actor/entropy', 'critic/loss', 'critic/value_mean',
      'imagination/return_mean',
      # gradient norms
      'world_model/grad_norm', 'actor/grad_norm', 'critic/grad_norm',
      # returns, progress, speed, safety net
      'train/episode_return', 'train/episode_length', 'train/episodes',
      'eval/return', 'eval/return_std', 'perf/fps', 'perf/train_steps',
      'replay/steps', 'replay/episodes', 'learner/nonfinite',
      'train/nonfinite_updates', 'open_loop/mse',
  }
  assert expected <= scalars, sorted(expected - scalars)
  for tag in expected:
    for event in acc.Tensors(tag):
      assert np.isfinite(float(tf.make_ndarray(event.tensor_proto))), tag
  assert [e.step for e in acc.Tensors('perf/fps')] == [50, 100, 150, 200]
  # NaN where no batch of a log window held a terminal step.
  assert 'world_model/continue_at_terminal' in scalars


def test_histograms_of_latent_states_and_actions(run):
  _, acc = run
  assert {'latent/state', 'train/action'} <= _plugin_tags(acc, 'histograms')
  # Written every 50 env steps; latents once there is a training batch.
  assert [e.step for e in acc.Tensors('train/action')] == [50, 100, 150, 200]
  assert [e.step for e in acc.Tensors('latent/state')] == [100, 150, 200]
  # CartPole: action indices 0 and 1; a histogram is [k, 3] (left, right,
  # count), and each holds the actions taken since the previous one.
  for event in acc.Tensors('train/action'):
    buckets = tf.make_ndarray(event.tensor_proto)
    assert buckets.shape[1] == 3
    assert buckets[:, 0].min() >= 0 and buckets[:, 1].max() <= 1
    assert 40 <= buckets[:, 2].sum() <= 50
  latent = tf.make_ndarray(acc.Tensors('latent/state')[-1].tensor_proto)
  # A batch of 4 x 8 steps, latent size 8.
  assert latent[:, 2].sum() == 4 * 8 * 8


def test_open_loop_prediction_images(run):
  _, acc = run
  assert 'open_loop/observations' in _plugin_tags(acc, 'images')
  events = acc.Tensors('open_loop/observations')
  assert [e.step for e in events] == [100, 200]
  width, height, png = tf.make_ndarray(events[-1].tensor_proto)
  image = tf.io.decode_png(png).numpy()
  assert image.shape == (int(height), int(width), 3)
  # Not a blank canvas: lines of several colours were drawn.
  assert len(np.unique(image.reshape(-1, 3), axis=0)) > 20


def test_profiler_trace_has_the_asked_train_steps(run):
  logdir, _ = run
  from tensorflow.tsl.profiler.protobuf import xplane_pb2
  paths = glob.glob(os.path.join(logdir, 'plugins', 'profile', '*',
                                 '*.xplane.pb'))
  assert len(paths) == 1
  space = xplane_pb2.XSpace()
  with open(paths[0], 'rb') as f:
    space.ParseFromString(f.read())
  steps = []
  for plane in space.planes:
    names = {k: v.name for k, v in plane.event_metadata.items()}
    stat_names = {k: v.name for k, v in plane.stat_metadata.items()}
    for line in plane.lines:
      for event in line.events:
        if names.get(event.metadata_id) == 'train':
          stats = {stat_names[s.metadata_id]: s.int64_value or s.uint64_value
                   for s in event.stats}
          steps.append(stats['step_num'])
  assert sorted(steps) == list(range(*PROFILE))


# ---------------------------------------------------------------------------
# tensorboard_images on its own.
# ---------------------------------------------------------------------------


def test_longest_episode_span_stops_at_episode_starts():
  is_first = np.zeros((3, 8), bool)
  is_first[:, 0] = True
  is_first[0, 3] = True  # row 0: [0, 3) and [3, 8)
  is_first[1, 2] = is_first[1, 7] = True  # row 1: [2, 7) is 5 long
  is_first[2, 1] = is_first[2, 5] = True  # row 2: [1, 5), [5, 8)
  assert tensorboard_images.longest_episode_span(is_first) == (0, 3, 8)
  is_first[0, 6] = True
  assert tensorboard_images.longest_episode_span(is_first) == (1, 2, 7)


def test_observation_groups_cover_every_dimension_in_at_most_8_subplots():
  for dim in (1, 3, 8, 17, 100):
    groups = tensorboard_images.observation_groups(dim)
    assert len(groups) == min(dim, 8)
    assert np.concatenate(groups).tolist() == list(range(dim))


def test_prediction_figure_is_an_rgb_image():
  rng = np.random.default_rng(0)
  true = rng.normal(size=(20, 17))
  image = tensorboard_images.prediction_figure(true, true + 0.1, 'title')
  assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
  assert image.shape[0] > 100 and image.shape[1] > 100


@pytest.fixture(scope='module')
def world_model():
  spec = EnvSpec('CartPole-v1', observations=4, action_dim=2,
                 discrete=True)
  return build_agent(load_config(None, SMALL_OVERRIDES), spec).world_model


def _predict(world_model, observation, action):
  """Open-loop predictions [T, O] of a one-key (vector) environment."""
  return tensorboard_images.open_loop_prediction(
      world_model, {'observation': observation}, action)['observation']


def test_open_loop_prediction_sees_the_first_observation_only(world_model):
  rng = np.random.default_rng(1)
  obs = rng.normal(size=(6, 4)).astype(np.float32)
  action = np.eye(2, dtype=np.float32)[rng.integers(0, 2, 6)]
  predicted = _predict(world_model, obs, action)
  assert predicted.shape == (6, 4)
  # Step 0 is the reconstruction of o_0.
  reconstruction = world_model.decoder(
      world_model.encode({'observation': obs[:1]}))['observation'].mean()
  np.testing.assert_allclose(predicted[0], reconstruction.numpy()[0],
                             rtol=1e-5, atol=1e-6)
  # Later observations are not looked at (open loop).
  other = obs.copy()
  other[1:] = rng.normal(size=(5, 4))
  np.testing.assert_array_equal(
      _predict(world_model, other, action),
      predicted)
  # a_t leads from step t to t+1: changing a_2 changes steps 3 on only.
  changed = action.copy()
  changed[2] = 1.0 - changed[2]
  again = _predict(world_model, obs, changed)
  np.testing.assert_array_equal(again[:3], predicted[:3])
  assert not np.allclose(again[3:], predicted[3:])
  # The last action leads nowhere inside the sequence.
  changed = action.copy()
  changed[5] = 1.0 - changed[5]
  np.testing.assert_array_equal(
      _predict(world_model, obs, changed),
      predicted)


def test_write_open_loop_image_uses_one_episode_of_the_batch(
    world_model, tmp_path):
  rng = np.random.default_rng(2)
  batch = {
      'observation': rng.normal(size=(2, 8, 4)).astype(np.float32),
      'action': np.eye(2, dtype=np.float32)[rng.integers(0, 2, (2, 8))],
      'is_first': np.zeros((2, 8), bool),
  }
  batch['is_first'][:, 0] = True
  batch['is_first'][0, 4] = batch['is_first'][1, 2] = True  # longest: 1, 2:8
  writer = tf.summary.create_file_writer(str(tmp_path))
  mse = tensorboard_images.write_open_loop_image(writer, world_model, batch,
                                                 step=7)
  expected = _predict(
      world_model, batch['observation'][1, 2:], batch['action'][1, 2:])
  assert mse == pytest.approx(
      float(np.mean((expected - batch['observation'][1, 2:]) ** 2)))
  acc = event_accumulator.EventAccumulator(
      str(tmp_path), size_guidance={event_accumulator.TENSORS: 0})
  acc.Reload()
  assert [e.step for e in acc.Tensors('open_loop/observations')] == [7]
  # Every stretch shorter than 2 steps: nothing to draw.
  batch['is_first'][:] = True
  assert tensorboard_images.write_open_loop_image(
      writer, world_model, batch, step=8) is None
