"""A fixed CartPole-like batch and a short world-model training loop.

Shared by test_dynamics.py, test_representation.py and test_rssm_latents.py: every dynamics and
representation type must give a finite world-model loss that falls when
trained on the same small batch.
"""

import math

import keras
import numpy as np
import tensorflow as tf

from conftest import SMALL_OVERRIDES
from wm_tf.agent.builder import build_world_model
from wm_tf.config import load_config
from wm_tf.runtime.environments import EnvSpec

CARTPOLE_SPEC = EnvSpec('CartPole-v1', observations=4, action_dim=2,
                        discrete=True)


def cartpole_like_batch(batch_size: int = 4, length: int = 8, seed: int = 0
                        ) -> dict:
  """[B, T] steps of a NumPy cart-pole under random actions.

  Euler steps of the classic cart-pole equations (force +-10, dt 0.02);
  an episode ends (is_terminal, reward 0 afterwards) when the pole passes
  12 degrees or the cart 2.4, and the next step starts a new episode
  (is_first, reward 0), as in the replay's step format. Starts are spread
  wider than CartPole's so that short sequences contain episode ends.
  """
  rng = np.random.default_rng(seed)
  gravity, cart_mass, pole_mass, half_length, dt = 9.8, 1.0, 0.1, 0.5, 0.02
  total = cart_mass + pole_mass
  obs = np.zeros((batch_size, length, 4), np.float32)
  action = np.zeros((batch_size, length, 2), np.float32)
  reward = np.zeros((batch_size, length), np.float32)
  is_first = np.zeros((batch_size, length), bool)
  is_terminal = np.zeros((batch_size, length), bool)
  start = lambda: rng.uniform([-0.05, -0.05, -0.2, -1.5],
                              [0.05, 0.05, 0.2, 1.5])
  for b in range(batch_size):
    state = start()
    first, r = True, 0.0
    for t in range(length):
      obs[b, t], is_first[b, t], reward[b, t] = state, first, r
      x, x_dot, theta, theta_dot = state
      done = abs(theta) > 12 * math.pi / 180 or abs(x) > 2.4
      if done and not first:
        is_terminal[b, t] = True
        state, first, r = start(), True, 0.0
        continue
      a = int(rng.integers(0, 2))
      action[b, t, a] = 1.0
      force = 10.0 if a == 1 else -10.0
      cos, sin = math.cos(theta), math.sin(theta)
      temp = (force + pole_mass * half_length * theta_dot ** 2 * sin) / total
      theta_acc = (gravity * sin - cos * temp) / (
          half_length * (4.0 / 3.0 - pole_mass * cos ** 2 / total))
      x_acc = temp - pole_mass * half_length * theta_acc * cos / total
      state = np.array([x + dt * x_dot, x_dot + dt * x_acc,
                        theta + dt * theta_dot, theta_dot + dt * theta_acc])
      first, r = False, 1.0
  return {
      'observation': tf.constant(obs),
      'action': tf.constant(action),
      'reward': tf.constant(reward),
      'is_first': tf.constant(is_first),
      'is_terminal': tf.constant(is_terminal),
      'is_last': tf.constant(is_terminal),
  }


def feature_sequence(batch: int = 3, length: int = 6, seed: int = 0,
                     feature_dim: int = 16, action_dim: int = 2):
  """(features [B, T, F], one-hot actions [B, T, A], is_first [B, T] as a
  NumPy array, 1 at t = 0 only): random inputs of a representation learner."""
  rng = np.random.default_rng(seed)
  features = tf.constant(rng.normal(size=(batch, length, feature_dim)),
                         tf.float32)
  action = tf.one_hot(rng.integers(0, action_dim, (batch, length)),
                      action_dim)
  is_first = np.zeros((batch, length), np.float32)
  is_first[:, 0] = 1.0
  return features, action, is_first


def small_world_model(overrides=(), seed: int = 0):
  """A world model of the small test config plus `overrides`."""
  keras.utils.set_random_seed(seed)
  config = load_config(None, list(SMALL_OVERRIDES) + list(overrides))
  return build_world_model(config, CARTPOLE_SPEC)


def train_world_model(world_model, batch, steps: int = 100,
                      learning_rate: float = 3e-3):
  """Adam on world_model_loss(batch) for `steps` steps (one tf.function).

  Returns the metrics before and after, each evaluated with one fixed seed
  so that stochastic learners (VAE, RSSM) are compared on equal draws.
  """
  eval_seed = tf.constant([5, 6], tf.int32)
  before = world_model.world_model_loss(batch, seed=eval_seed)[2]
  optimizer = keras.optimizers.Adam(learning_rate)
  variables = world_model.trainable_variables
  optimizer.build(variables)  # slots must exist before the loop

  @tf.function
  def train(steps):
    for _ in tf.range(steps):
      with tf.GradientTape() as tape:
        loss = world_model.world_model_loss(batch)[0]
      grads = tape.gradient(loss, variables)
      optimizer.apply_gradients(
          [(tf.zeros_like(v) if g is None else g, v)
           for g, v in zip(grads, variables)])

  train(tf.constant(steps))
  after = world_model.world_model_loss(batch, seed=eval_seed)[2]
  as_floats = lambda m: {k.split('/', 1)[1]: float(v) for k, v in m.items()}
  return as_floats(before), as_floats(after)
