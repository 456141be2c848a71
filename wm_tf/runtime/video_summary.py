"""Videos for TensorBoard: image predictions and episodes as animated GIFs.

TensorBoard's Images dashboard shows an image summary's encoded bytes in
an <img> element, so a GIF there plays as a video. `write_video` writes
one in the TF1 `Summary.Image` form (colorspace, size, encoded string)
through the default tf.summary writer; TensorBoard reads it as any image.

Tags: `open_loop_tag(key)` = 'world_model/open_loop/<key>' for open-loop
predictions of an image key (frames from `prediction_frames`), and
`episode_tag(key)` = 'eval/episode/<key>' for evaluation episodes.
"""

from __future__ import annotations

import io

import numpy as np
import tensorflow as tf
from PIL import Image

from wm_tf.components.conv import to_uint8

# |true - predicted| is multiplied by this before display: errors of a
# third of the range and more show as full white, small ones stay visible.
ERROR_GAIN = 3.0


def open_loop_tag(key: str) -> str:
  """The tag of the open-loop prediction video of image key `key`."""
  return f'world_model/open_loop/{key}'


def episode_tag(key: str) -> str:
  """The tag of the evaluation episode video of image key `key`."""
  return f'eval/episode/{key}'


def as_uint8(images) -> np.ndarray:
  """uint8 images as they are; float images, taken to be in
  `wm_tf.components.conv.to_float`'s space (x / 255 - 0.5, as the image
  decoder's mean is), mapped back to uint8 by `to_uint8`."""
  images = np.asarray(images)
  if images.dtype == np.uint8:
    return images
  return to_uint8(images).numpy()


def prediction_frames(true, predicted,
                      error_gain: float = ERROR_GAIN) -> np.ndarray:
  """Video frames showing true | predicted | error for each sequence.

  Args:
    true, predicted: images [B, T, H, W, C] (C = 1 or 3), uint8 or float
      in `to_float` space (see `as_uint8`).
    error_gain: |true - predicted| (uint8 units) is scaled by it, then
      clipped to 255, so that small errors are visible.

  Returns:
    uint8 frames [T, B * H, 3 * W, C]: row b of the grid is sequence b,
    its columns the true image, the prediction and the scaled error.
  """
  true, predicted = as_uint8(true), as_uint8(predicted)
  if true.shape != predicted.shape or true.ndim != 5 or true.shape[-1] not in (
      1, 3):
    raise ValueError(
        'prediction_frames expects true and predicted images of one shape '
        f'[B, T, H, W, C] with C 1 or 3; got {true.shape} and '
        f'{predicted.shape}.')
  error = np.abs(true.astype(np.int16) - predicted.astype(np.int16))
  error = np.clip(error * error_gain, 0, 255).astype(np.uint8)
  grid = np.concatenate([true, predicted, error], axis=3)  # [B, T, H, 3W, C]
  batch, steps, height, width, channels = grid.shape
  return grid.transpose(1, 0, 2, 3, 4).reshape(
      steps, batch * height, width, channels)


def encode_gif(frames: np.ndarray, fps: float = 10) -> bytes:
  """uint8 frames [T, H, W, C] (C = 1 or 3) -> an endlessly looping GIF.

  GIF has one 256-color palette per frame: frames with more colors are
  quantized. Identical consecutive frames become one frame shown for
  their summed duration.
  """
  frames = _check_frames(frames, 'encode_gif')
  mode = 'L' if frames.shape[-1] == 1 else 'RGB'
  images = [Image.fromarray(frame[..., 0] if mode == 'L' else frame, mode)
            for frame in frames]
  buffer = io.BytesIO()
  images[0].save(buffer, format='GIF', save_all=True,
                 append_images=images[1:], duration=round(1000 / fps),
                 loop=0)
  return buffer.getvalue()


def _check_frames(frames, who: str) -> np.ndarray:
  frames = np.asarray(frames)
  if (frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[0] < 1
      or frames.shape[-1] not in (1, 3)):
    raise ValueError(
        f'{who} expects uint8 frames [T, H, W, C] with T >= 1 and C 1 or 3; '
        f'got {frames.dtype} {frames.shape}.')
  return frames


def write_video(name: str, frames: np.ndarray, step=None,
                fps: float = 10) -> bool:
  """Writes frames as an animated GIF image summary `name`.

  Args:
    name: the tag, e.g. `open_loop_tag('image')`.
    frames: uint8 [T, H, W, C], C = 1 (grayscale) or 3 (RGB).
    step: the summary step (default: tf.summary.experimental.get_step()).
    fps: frames per second of playback.

  Returns:
    True if written, False if there is no default tf.summary writer.
  """
  frames = _check_frames(frames, 'write_video')
  _, height, width, channels = frames.shape
  summary = tf.compat.v1.Summary(value=[tf.compat.v1.Summary.Value(
      tag=name, image=tf.compat.v1.Summary.Image(
          height=height, width=width, colorspace=channels,
          encoded_image_string=encode_gif(frames, fps)))])
  return bool(tf.summary.experimental.write_raw_pb(
      summary.SerializeToString(), step=step))
