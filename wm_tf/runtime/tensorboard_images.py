"""Pictures for TensorBoard: open-loop predictions of the world model.

From a real replay sequence, the world model encodes the first observation
only, then rolls its dynamics forward with the actions that were really
taken, and decodes every predicted latent state:

    z_0 = encode(o_0)        z_{t+1} = mean dynamics(z_t, a_t)
    prediction_t = mean decoder(z_t)      compared with the true o_t

A good model keeps the predicted curves on the true ones for many steps;
how soon they part shows how far imagination can be trusted.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from wm_tf.runtime import video_summary

# At most this many subplots; wider observations share them.
MAX_SUBPLOTS = 8


def open_loop_prediction(world_model, observation: Dict[str, np.ndarray],
                         action: np.ndarray) -> Dict[str, np.ndarray]:
  """Decoded open-loop predictions along one real sequence.

  Args:
    world_model: a `wm_tf.world_model.WorldModel`.
    observation: true observations {key: [T, *shape]}; only o_0 is encoded.
    action: actions taken [T, A]; a_t leads from step t to t+1.

  Returns:
    Predicted observations {decoded key: [T, *shape]} (the decoder's
    means: images as the image decoder's floats); row 0 is the
    reconstruction of o_0.
  """
  latent = world_model.encode(
      {k: tf.convert_to_tensor(v[:1]) for k, v in observation.items()})
  latents = [latent]  # each [1, D]
  for t in range(len(action) - 1):
    latent = world_model.dynamics(latent, action[t:t + 1]).mean()
    latents.append(latent)
  return {k: dist.mean().numpy()
          for k, dist in world_model.decoder(tf.concat(latents, 0)).items()}


def longest_episode_span(is_first: np.ndarray) -> Tuple[int, int, int]:
  """The longest run of steps of a [B, T] batch inside one episode.

  A new episode starts where is_first is true (past step 0), and the
  dynamics never predict across that boundary.

  Returns:
    (row b, start t0, stop t1): steps t0 <= t < t1 of row b.
  """
  best = (0, 0, 1)
  for b, flags in enumerate(np.asarray(is_first, bool)):
    bounds = [0] + [t for t in range(1, len(flags)) if flags[t]] + [
        len(flags)]
    for start, stop in zip(bounds[:-1], bounds[1:]):
      if stop - start > best[2] - best[1]:
        best = (b, start, stop)
  return best


def observation_groups(observation_dim: int,
                       max_subplots: int = MAX_SUBPLOTS) -> List[np.ndarray]:
  """Splits observation indices into at most `max_subplots` groups."""
  count = min(observation_dim, max_subplots)
  return np.array_split(np.arange(observation_dim), count)


def prediction_figure(true: np.ndarray, predicted: np.ndarray,
                      title: str = '') -> np.ndarray:
  """Draws true (solid) against predicted (dashed) observations.

  One subplot per group of observation dimensions (see
  `observation_groups`); time on the x axis.

  Args:
    true, predicted: [T, O].
    title: figure title.

  Returns:
    The figure as an RGB image, uint8 [H, W, 3].
  """
  groups = observation_groups(true.shape[1])
  columns = min(len(groups), 4)
  rows = -(-len(groups) // columns)
  figure = Figure(figsize=(3.2 * columns, 2.4 * rows), dpi=80)
  canvas = FigureCanvasAgg(figure)
  steps = np.arange(len(true))
  for i, group in enumerate(groups):
    axes = figure.add_subplot(rows, columns, i + 1)
    for j, dim in enumerate(group):
      color = f'C{j % 10}'
      axes.plot(steps, true[:, dim], color=color, label=f'true [{dim}]')
      axes.plot(steps, predicted[:, dim], color=color, linestyle='--',
                label=f'predicted [{dim}]')
    axes.set_title(f'observation {_group_name(group)}', fontsize=9)
    axes.set_xlabel('step', fontsize=8)
    axes.tick_params(labelsize=7)
    if i == 0:
      axes.legend(fontsize=6, loc='best')
  if title:
    figure.suptitle(title, fontsize=10)
  figure.tight_layout()
  canvas.draw()
  return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _group_name(group: np.ndarray) -> str:
  if len(group) == 1:
    return f'[{group[0]}]'
  return f'[{group[0]}:{group[-1] + 1}]'


def write_open_loop_image(writer, world_model, batch: Dict[str, np.ndarray],
                          step: int) -> Optional[float]:
  """Writes 'open_loop/observations' (image) and 'open_loop/mse' (scalar).

  Uses the longest single-episode stretch of the batch.

  Args:
    writer: a tf.summary writer.
    world_model: the `WorldModel`.
    batch: a replay batch: the observation keys [B, T, *shape], 'action'
      [B, T, A], 'is_first' [B, T]. The decoder's vector keys are drawn,
      concatenated in its order.
    step: the summary step (env steps).

  Returns:
    The mean squared prediction error of the vector keys, or None if no
    stretch has 2 steps or the decoder has no vector key.
  """
  b, start, stop = longest_episode_span(np.asarray(batch['is_first']))
  keys = world_model.decoder.vector_keys
  if stop - start < 2 or not keys:
    return None
  observation = {k: np.asarray(batch[k][b, start:stop])
                 for k in world_model.encoder.keys}
  action = np.asarray(batch['action'][b, start:stop], np.float32)
  prediction = open_loop_prediction(world_model, observation, action)
  true = np.concatenate([observation[k] for k in keys], -1).astype(np.float32)
  predicted = np.concatenate([prediction[k] for k in keys], -1)
  mse = float(np.mean(np.square(predicted - true)))
  image = prediction_figure(
      true, predicted, f'open-loop prediction from step {start} (env step '
      f'{step}); solid: true, dashed: predicted')
  with writer.as_default(step=step):
    tf.summary.image('open_loop/observations', image[None])
    tf.summary.scalar('open_loop/mse', mse)
  writer.flush()
  return mse


# Replayed steps observed before the open-loop video's predictions start:
# a recurrent representation needs a few frames to infer velocities.
VIDEO_CONTEXT = 5
VIDEO_SEQUENCES = 4


def open_loop_images(world_model, batch: Dict[str, np.ndarray],
                     context: int = VIDEO_CONTEXT) -> Dict[str, np.ndarray]:
  """Decoded images along [B, T] replayed sequences, open loop after
  `context` steps.

  Steps t < context are reconstructions of the observed steps (the
  sequence's latent states, `WorldModel.latent_states`); after them the
  dynamics' mean rolls forward with the replayed actions from the state
  at context - 1, and each state is decoded.

  Args:
    batch: the observation keys [B, T, *shape], 'action' [B, T, A],
      'is_first' [B, T].

  Returns:
    {image key of the decoder: [B, T, H, W, C] float images in the
    decoder's space (x / 255 - 0.5)}.
  """
  inputs = {k: tf.convert_to_tensor(v) for k, v in batch.items()}
  latents = world_model.latent_states(inputs)  # [B, T, D]
  length = latents.shape[1]
  context = max(1, min(context, length))
  state = latents[:, context - 1]
  states = [latents[:, t] for t in range(context)]
  for t in range(context - 1, length - 1):
    state = world_model.dynamics(state, inputs['action'][:, t]).mean()
    states.append(state)
  decoded = world_model.decoder(tf.stack(states, 1))
  return {k: decoded[k].mean().numpy()
          for k in world_model.decoder.image_keys}


def _video_rows(is_first: np.ndarray, count: int) -> np.ndarray:
  """Up to `count` rows of a [B, T] batch, those without an episode start
  after step 0 first (open-loop predictions never cross one)."""
  whole = ~np.asarray(is_first)[:, 1:].any(axis=1)
  order = np.concatenate([np.flatnonzero(whole), np.flatnonzero(~whole)])
  return order[:count]


def write_open_loop_videos(writer, world_model, batch: Dict[str, np.ndarray],
                           step: int) -> List[str]:
  """Writes the video 'world_model/open_loop/<key>' of each image key.

  Each shows up to VIDEO_SEQUENCES replayed sequences, one per row, as
  true | predicted | error (`wm_tf.runtime.video_summary`).

  Returns:
    The tags written (none if the decoder has no image key).
  """
  keys = world_model.decoder.image_keys
  if not keys:
    return []
  rows = _video_rows(batch['is_first'], VIDEO_SEQUENCES)
  batch = {k: np.asarray(v)[rows] for k, v in batch.items()}
  predicted = open_loop_images(world_model, batch)
  tags = []
  with writer.as_default(step=step):
    for key in keys:
      frames = video_summary.prediction_frames(batch[key], predicted[key])
      video_summary.write_video(video_summary.open_loop_tag(key), frames)
      tags.append(video_summary.open_loop_tag(key))
  writer.flush()
  return tags


def write_episode_videos(writer, frames: Dict[str, list], step: int) -> None:
  """Writes 'eval/episode/<key>': one episode's observations [H, W, C]."""
  with writer.as_default(step=step):
    for key, images in frames.items():
      if images:
        video_summary.write_video(video_summary.episode_tag(key),
                                  np.stack(images))
  writer.flush()
