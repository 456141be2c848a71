"""wm_tf/runtime/video_summary.py: the true | predicted | error layout, and
GIF image summaries read back from the event file and decoded."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageSequence
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.util import img_mime_type_detector

from wm_tf.components.conv import to_float
from wm_tf.runtime.video_summary import (encode_gif, episode_tag,
                                         open_loop_tag, prediction_frames,
                                         write_video)


def _random_images(shape, seed=0):
  return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.mark.parametrize('channels', [3, 1])
def test_prediction_frames_layout(channels):
  batch, steps, height, width = 2, 5, 8, 6
  true = _random_images((batch, steps, height, width, channels), 0)
  predicted = _random_images((batch, steps, height, width, channels), 1)
  frames = prediction_frames(true, predicted, error_gain=2.0)
  assert frames.shape == (steps, batch * height, 3 * width, channels)
  assert frames.dtype == np.uint8
  for t in range(steps):
    for b in range(batch):
      rows = frames[t, b * height:(b + 1) * height]
      np.testing.assert_array_equal(rows[:, :width], true[b, t])
      np.testing.assert_array_equal(rows[:, width:2 * width], predicted[b, t])
      error = np.minimum(2 * np.abs(true[b, t].astype(int) - predicted[b, t]),
                         255)
      np.testing.assert_array_equal(rows[:, 2 * width:], error)


def test_prediction_frames_take_floats_in_to_float_space():
  true = _random_images((1, 3, 4, 4, 3))
  predicted = _random_images((1, 3, 4, 4, 3), 1)
  floats = prediction_frames(to_float(true).numpy(),
                             to_float(predicted).numpy())
  np.testing.assert_array_equal(floats, prediction_frames(true, predicted))
  # Decoded means stray outside [-0.5, 0.5]: clipped, not wrapped around.
  far = prediction_frames(np.full((1, 1, 2, 2, 1), 0.9, np.float32),
                          np.full((1, 1, 2, 2, 1), -0.9, np.float32))
  assert far[0, :, :2].tolist() == [[[255]] * 2] * 2
  assert far[0, :, 2:4].tolist() == [[[0]] * 2] * 2


def test_prediction_frames_refuse_mismatched_shapes():
  with pytest.raises(ValueError, match=r'\[B, T, H, W, C\].*got \(1, 2, 4, '
                     r'4, 3\) and \(1, 3, 4, 4, 3\)'):
    prediction_frames(np.zeros((1, 2, 4, 4, 3), np.uint8),
                      np.zeros((1, 3, 4, 4, 3), np.uint8))


def _few_color_frames(steps, height, width, channels):
  """Frames of 4 colors, a square moving across them: each frame differs."""
  palette = np.array([[0, 0, 0], [255, 0, 0], [0, 200, 80], [40, 40, 250]],
                     np.uint8)[:, :channels]
  frames = np.empty((steps, height, width, channels), np.uint8)
  frames[:] = palette[0]
  frames[:, :, width // 2:] = palette[3]
  for t in range(steps):
    frames[t, t:t + 4, t:t + 4] = palette[1 + t % 2]
  return frames


def _read_images(logdir, tag):
  accumulator = event_accumulator.EventAccumulator(
      logdir, size_guidance={event_accumulator.IMAGES: 0})
  accumulator.Reload()
  return accumulator.Images(tag)


def _decode(encoded, channels):
  gif = Image.open(io.BytesIO(encoded))
  assert gif.format == 'GIF'
  return np.stack([
      np.asarray(frame.convert('RGB' if channels == 3 else 'L')).reshape(
          gif.height, gif.width, channels)
      for frame in ImageSequence.Iterator(gif)]), gif


@pytest.mark.parametrize('channels', [3, 1])
def test_write_video_round_trips_through_the_event_file(tmp_path, channels):
  frames = _few_color_frames(12, 16, 24, channels)
  writer = tf.summary.create_file_writer(str(tmp_path))
  with writer.as_default():
    assert write_video(open_loop_tag('image'), frames, step=7, fps=5)
    assert write_video(episode_tag('image'), frames[:3], step=9)
  writer.flush()
  images = _read_images(str(tmp_path), 'world_model/open_loop/image')
  assert len(images) == 1 and images[0].step == 7
  assert (images[0].height, images[0].width) == (16, 24)
  # What the Images dashboard serves it as: the browser then plays it.
  assert img_mime_type_detector.from_bytes(
      images[0].encoded_image_string) == 'image/gif'
  decoded, gif = _decode(images[0].encoded_image_string, channels)
  assert gif.info['duration'] == 200 and gif.info['loop'] == 0
  np.testing.assert_array_equal(decoded, frames)
  episode = _read_images(str(tmp_path), 'eval/episode/image')
  assert episode[0].step == 9
  np.testing.assert_array_equal(
      _decode(episode[0].encoded_image_string, channels)[0], frames[:3])


def test_many_colored_frames_come_back_within_palette_error():
  rng = np.random.default_rng(0)
  smooth = np.linspace(0, 255, 32)
  frames = np.stack([np.stack(np.broadcast_arrays(
      smooth[:, None], smooth[None, :], np.full((32, 32), 16.0 * t)), -1)
      for t in range(6)]).astype(np.uint8)
  frames[:, 10:14, 10:14] = rng.integers(0, 256, 3)
  decoded, _ = _decode(encode_gif(frames), 3)
  assert decoded.shape == frames.shape
  assert np.abs(decoded.astype(int) - frames).mean() < 4


def test_write_video_without_a_writer_writes_nothing():
  assert write_video('x', np.zeros((2, 4, 4, 3), np.uint8), step=0) is False


@pytest.mark.parametrize('frames', [
    np.zeros((2, 4, 4, 3), np.float32),
    np.zeros((4, 4, 3), np.uint8),
    np.zeros((2, 4, 4, 4), np.uint8),
    np.zeros((0, 4, 4, 3), np.uint8),
])
def test_write_video_refuses_what_is_not_uint8_frames(frames):
  with pytest.raises(ValueError, match=r'^write_video expects uint8 frames '
                     r'\[T, H, W, C\] with T >= 1 and C 1 or 3; got'):
    write_video('x', frames, step=0)
