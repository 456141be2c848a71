"""Encoders and decoders of observation dicts {key: array}.

An observation is a dict of float32 vectors [..., size] and uint8 images
[..., H, W, C] (`wm_tf.specs`). The multi-key encoder concatenates the
vector keys into one vector for its MLP branch and gives every image key
to a CNN of its own; the features are the MLP's followed by the CNNs', in
key order. The multi-key decoder returns one distribution per key it
reconstructs. Keys a component was not given are ignored, so the same
observation dict (or a whole replay batch) can be passed to both.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import keras
import tensorflow as tf

from wm_tf import distributions
from wm_tf.agent.symlog import SymlogDistribution
from wm_tf.components.conv import to_float


class _MultiKey(keras.Model):
  """What both share: the keys, an MLP branch for the vector keys (or
  None without any) and one CNN branch per image key."""

  def __init__(self, vector_keys: Sequence[str], image_keys: Sequence[str],
               mlp: Optional[keras.Model], cnn: Sequence[keras.Model],
               **kwargs):
    super().__init__(**kwargs)
    self.vector_keys = tuple(vector_keys)
    self.image_keys = tuple(image_keys)
    if bool(self.vector_keys) != (mlp is not None) or len(cnn) != len(
        self.image_keys):
      raise ValueError(
          f'{self.name}: needs an mlp exactly when there are vector keys '
          f'({self.vector_keys}) and one cnn per image key '
          f'({self.image_keys}), got mlp={mlp is not None}, {len(cnn)} cnns.')
    self.mlp = mlp
    # Named attributes, so checkpoints save each CNN by name.
    for i, model in enumerate(cnn):
      setattr(self, f'cnn_{i}', model)

  def build(self, input_shape):
    """The branches build at their first call."""
    del input_shape
    self.built = True

  @property
  def keys(self):
    """Every key the component reads or reconstructs."""
    return self.vector_keys + self.image_keys

  def get_config(self):
    return {**super().get_config(), 'vector_keys': self.vector_keys,
            'image_keys': self.image_keys}


class MultiKeyEncoder(_MultiKey):
  """Observation dict -> features [..., F].

  Args:
    vector_keys: the vector keys the MLP branch reads, concatenated in this
      order into [..., sum of sizes].
    image_keys: the image keys, each read by its CNN.
    mlp: vectors [..., sum of sizes] -> features [..., F_mlp] (e.g. a
      `VectorEncoder`), or None without vector keys.
    cnn: one model per image key, images [..., H, W, C] uint8 -> features
      [..., F_k] (e.g. a `wm_tf.components.conv.ConvEncoder`).

  Input: {key: [..., *shape]} holding at least the keys above. Output:
  features [..., F_mlp + sum_k F_k] float32.
  """

  def __init__(self, vector_keys: Sequence[str], image_keys: Sequence[str],
               mlp: Optional[keras.Model] = None,
               cnn: Sequence[keras.Model] = (), **kwargs):
    super().__init__(vector_keys, image_keys, mlp, cnn, **kwargs)

  def call(self, observation: Dict[str, tf.Tensor]):
    parts = []
    if self.vector_keys:
      parts.append(self.mlp(tf.concat(
          [tf.cast(observation[k], tf.float32) for k in self.vector_keys],
          -1)))
    for i, key in enumerate(self.image_keys):
      parts.append(self._image_features(getattr(self, f'cnn_{i}'),
                                        observation[key]))
    return parts[0] if len(parts) == 1 else tf.concat(parts, -1)

  @staticmethod
  def _image_features(cnn, images):
    """cnn(images) [..., F_k], its F_k made static where the CNN tells it
    (`output_dim(image shape)`): the MLPs after the encoder need it."""
    features = tf.cast(cnn(images), tf.float32)
    if callable(getattr(cnn, 'output_dim', None)):
      # Static only (no op: ONNX and TFLite have no EnsureShape).
      features.set_shape(images.shape[:-3].concatenate(
          [cnn.output_dim(images.shape[-3:])]))
    return features


class MultiKeyDecoder(_MultiKey):
  """Latent states [..., D] -> {key: distribution over that key}.

  Vector keys: one `mlp` (a `wm_tf.components.heads.Decoder`: a
  unit-variance Normal over the concatenation [..., sum of sizes]) whose
  mean is split back into unit-variance Normals [..., size_k], each over
  symlog(x) if `symlog`. Image keys: one decoder each, returning a
  distribution with event shape [H, W, C] over images as floats (see
  `targets`).

  Args:
    vector_keys, vector_sizes: the vector keys and their sizes, in the
      order of the mlp's output.
    image_keys: the image keys, one `cnn` entry each.
    mlp: latents [..., D] -> Normal over [..., sum of sizes], or None.
    cnn: per image key, latents [..., D] -> distribution over [H, W, C]
      (e.g. `wm_tf.components.conv.ConvDecoder`).
    symlog: the vector distributions are over symlog(x).
  """

  def __init__(self, vector_keys: Sequence[str], vector_sizes: Sequence[int],
               image_keys: Sequence[str], mlp: Optional[keras.Model] = None,
               cnn: Sequence[keras.Model] = (), symlog: bool = False,
               **kwargs):
    super().__init__(vector_keys, image_keys, mlp, cnn, **kwargs)
    self.vector_sizes = tuple(int(n) for n in vector_sizes)
    if len(self.vector_sizes) != len(self.vector_keys):
      raise ValueError(f'{self.name}: needs one size per vector key; got '
                       f'{self.vector_keys}, {self.vector_sizes}.')
    self.symlog = bool(symlog)

  def call(self, state) -> Dict[str, object]:
    out = {}
    if self.vector_keys:
      loc = self.mlp(state).mean()
      start = 0
      for key, size in zip(self.vector_keys, self.vector_sizes):
        dist = distributions.normal(loc[..., start:start + size], 1.0)
        out[key] = SymlogDistribution(dist) if self.symlog else dist
        start += size
    for i, key in enumerate(self.image_keys):
      out[key] = getattr(self, f'cnn_{i}')(state)
    return out

  def targets(self, observation: Dict[str, tf.Tensor]
              ) -> Dict[str, tf.Tensor]:
    """The values the distributions of `call` score, per decoded key:
    vectors as float32, images as the image decoder's floats."""
    out = {k: tf.cast(observation[k], tf.float32) for k in self.vector_keys}
    out.update({k: to_float(observation[k]) for k in self.image_keys})
    return out

  def get_config(self):
    return {**super().get_config(), 'vector_sizes': self.vector_sizes,
            'symlog': self.symlog}
