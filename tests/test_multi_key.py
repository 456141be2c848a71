"""Tests for wm_tf/components/multi_key.py against its parts and NumPy."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from wm_tf.components.conv import ConvDecoder, ConvEncoder
from wm_tf.components.encoder import VectorEncoder
from wm_tf.components.heads import Decoder
from wm_tf.components.multi_key import MultiKeyDecoder, MultiKeyEncoder

SMALL = dict(units=8, layers=1, activation='silu')


def _observation(rng, leading=(2, 3)):
  return {
      'a': rng.normal(size=leading + (3,)).astype(np.float32),
      'b': rng.normal(size=leading + (2,)).astype(np.float32),
      'image': rng.integers(0, 256, leading + (16, 16, 3)).astype(np.uint8),
      'info': rng.normal(size=leading + (5,)).astype(np.float32),
  }


def test_encoder_concatenates_vectors_then_image_features():
  keras.utils.set_random_seed(0)
  rng = np.random.default_rng(0)
  obs = _observation(rng)
  mlp = VectorEncoder(**SMALL)
  cnn = ConvEncoder(depth=2, kernel=3)
  encoder = MultiKeyEncoder(('b', 'a'), ('image',), mlp, [cnn])
  features = encoder(obs).numpy()
  vectors = np.concatenate([obs['b'], obs['a']], -1)  # in key order
  want = np.concatenate([mlp(vectors).numpy(), cnn(obs['image']).numpy()],
                        -1)
  np.testing.assert_allclose(features, want, rtol=1e-6)
  assert features.shape == (2, 3, 8 + cnn.output_dim((16, 16, 3)))
  # 'info' is not read: changing it changes nothing.
  changed = dict(obs, info=obs['info'] + 100)
  np.testing.assert_array_equal(encoder(changed).numpy(), features)
  assert encoder.keys == ('b', 'a', 'image')


def test_encoder_features_have_a_static_size_in_a_graph():
  encoder = MultiKeyEncoder((), ('image',), None, [ConvEncoder(depth=2)])
  fn = tf.function(encoder, input_signature=[
      {'image': tf.TensorSpec([None, 16, 16, 3], tf.uint8)}])
  assert fn.get_concrete_function().structured_outputs.shape.as_list() == [
      None, 2 * 2 ** 1 * 4 * 4]


def test_decoder_splits_the_vector_normal_per_key_and_sums_to_it():
  keras.utils.set_random_seed(1)
  rng = np.random.default_rng(1)
  obs = _observation(rng)
  latent = rng.normal(size=(2, 3, 6)).astype(np.float32)
  mlp = Decoder(5, **SMALL)
  decoder = MultiKeyDecoder(('a', 'b'), (3, 2), ('image',), mlp,
                            [ConvDecoder(shape=(16, 16, 3), depth=2)])
  dists = decoder(latent)
  assert sorted(dists) == ['a', 'b', 'image']
  targets = {k: v.numpy() for k, v in decoder.targets(obs).items()}
  np.testing.assert_allclose(targets['image'],
                             obs['image'].astype(np.float32) / 255 - 0.5,
                             rtol=1e-6)
  whole = mlp(latent).log_prob(np.concatenate([obs['a'], obs['b']], -1))
  parts = dists['a'].log_prob(targets['a']) + dists['b'].log_prob(
      targets['b'])
  np.testing.assert_allclose(parts.numpy(), whole.numpy(), rtol=1e-5)
  mean = dists['image'].mean().numpy()
  want = (-0.5 * (targets['image'] - mean) ** 2 - 0.5 * np.log(2 * np.pi)
          ).sum((-3, -2, -1))
  np.testing.assert_allclose(dists['image'].log_prob(targets['image']),
                             want, rtol=1e-4)


def test_branches_must_match_the_keys():
  with pytest.raises(ValueError, match='one cnn per image key'):
    MultiKeyEncoder(('a',), ('image',), VectorEncoder(**SMALL), [])
  with pytest.raises(ValueError, match='needs an mlp exactly'):
    MultiKeyEncoder((), ('image',), VectorEncoder(**SMALL),
                    [ConvEncoder()])
  with pytest.raises(ValueError, match='one size per vector key'):
    MultiKeyDecoder(('a', 'b'), (3,), (), Decoder(3, **SMALL))
