"""What the step benchmarks share: the model sizes, a synthetic batch and
the analytic FLOPs of one `Learner.train` step (no flags, so the
benchmarks that define flags can all import it)."""

from __future__ import annotations

from typing import Dict, List

ENV_ID = 'CartPole-v1'

# Hidden width of every MLP (encoder, representation, dynamics, heads,
# actor, critic) per named size; batch, horizon and latent stay default.
SIZES = {'small': 128, 'default': 256, 'large': 512}
_UNIT_KEYS = ('encoder', 'representation_learner', 'dynamics',
              'heads.reward', 'heads.continue', 'heads.decoder', 'actor',
              'critic')


def size_overrides(units: int) -> List[str]:
  """Config overrides setting every MLP's hidden width to `units`."""
  return [f'{key}.units={units}' for key in _UNIT_KEYS]


def _mlp_dims(d_in: int, units: int, layers: int, d_out: int = 0):
  """[(in, out)] of an MLP's Dense layers, plus an output layer if d_out."""
  dims, d = [], d_in
  for _ in range(layers):
    dims.append((d, units))
    d = units
  if d_out:
    dims.append((d, d_out))
  return dims


def _macs(dims) -> int:
  return sum(i * o for i, o in dims)


def train_step_flops(config, observation_dim: int, action_dim: int,
                     discrete: bool = True) -> Dict[str, int]:
  """Matmul FLOPs (2 per multiply-add) of one `Learner.train` step.

  Counts the Dense layers only: LayerNorm, activations, distributions and
  the optimizers are elementwise and far smaller in FLOPs (though not
  necessarily in time). With N = B * T start states and horizon H:

    world_model_fwd  encoder, representation, heads on N rows; dynamics on
                     B * (T - 1) rows.
    world_model_bwd  weight and input gradients of every layer, except the
                     input gradient of the encoder's first layer.
    imagine_fwd      actor + dynamics on N rows, H times.
    heads_fwd        reward, continue and critic on N * H rows, slow critic
                     on N * (H + 1).
    actor_bwd        input gradients through reward, continue, slow critic
                     and the dynamics chain (their weights get no gradient);
                     weight and input gradients of the actor, except the
                     input of its first layer (a stop_gradient).
    critic_bwd       weight and input gradients of the critic (not its
                     first layer's input) on N * H rows.

  Gradients nobody asks for (the world model's weights in the actor loss)
  are assumed pruned, as XLA and Grappler do.

  Returns:
    {part: FLOPs} and 'total'.
  """
  c = config
  latent = c.representation_learner.latent_dim
  batch, length = c.replay.batch_size, c.replay.sequence_length
  horizon = c.imagination.horizon
  n = batch * length

  def mlp(mc, d_in, d_out):
    return _mlp_dims(d_in, mc.units, mc.layers, d_out)

  encoder = mlp(c.encoder, observation_dim, 0)
  features = c.encoder.units if c.encoder.layers else observation_dim
  representation = mlp(c.representation_learner, features, latent)
  dynamics = mlp(c.dynamics, latent + action_dim, latent)
  if c.dynamics.std == 'learned':
    hidden = c.dynamics.units if c.dynamics.layers else latent + action_dim
    dynamics.append((hidden, latent))
  from wm_tf.distributions import TWOHOT_BINS

  def scalar_outputs(head_config):
    return TWOHOT_BINS if head_config.distribution == 'twohot' else 1

  reward = mlp(c.heads.reward, latent, scalar_outputs(c.heads.reward))
  continue_ = mlp(c.heads.continue_, latent, 1)
  decoder = mlp(c.heads.decoder, latent, observation_dim)
  actor = mlp(c.actor, latent, action_dim if discrete else 2 * action_dim)
  critic = mlp(c.critic, latent, scalar_outputs(c.critic))

  def first(dims):
    return dims[0][0] * dims[0][1] if dims else 0

  flops = {}
  flops['world_model_fwd'] = 2 * (
      n * (_macs(encoder) + _macs(representation) + _macs(reward)
           + _macs(continue_) + _macs(decoder))
      + batch * (length - 1) * _macs(dynamics))
  flops['world_model_bwd'] = 2 * flops['world_model_fwd'] - 2 * n * first(
      encoder)
  flops['imagine_fwd'] = 2 * n * horizon * (_macs(actor) + _macs(dynamics))
  flops['heads_fwd'] = 2 * n * (
      horizon * (_macs(reward) + _macs(continue_) + _macs(critic))
      + (horizon + 1) * _macs(critic))
  flops['actor_bwd'] = (
      2 * n * (horizon * (_macs(reward) + _macs(continue_))
               + (horizon + 1) * _macs(critic))
      + 2 * n * horizon * _macs(dynamics)
      + 2 * n * horizon * (2 * _macs(actor) - first(actor)))
  flops['critic_bwd'] = 2 * n * horizon * (2 * _macs(critic) - first(critic))
  flops['total'] = sum(flops.values())
  return flops


def synthetic_batch(spec, batch_size: int, length: int, seed: int = 0):
  """A random batch [B, T, ...] in the replay's step format."""
  import numpy as np
  import tensorflow as tf
  from wm_tf.runtime.collector import random_actions
  rng = np.random.default_rng(seed)
  shape = (batch_size, length)
  actions = random_actions(rng, spec, batch_size * length).reshape(
      shape + (spec.action_dim,))
  is_first = np.zeros(shape, bool)
  is_first[:, 0] = True
  batch = {
      'observation': rng.normal(size=shape + (spec.observation_dim,)),
      'action': actions,
      'reward': np.ones(shape),
      'is_first': is_first,
      'is_terminal': rng.random(shape) < 0.05,
      'is_last': np.zeros(shape, bool),
  }
  return {k: tf.constant(v.astype(np.float32) if v.dtype == np.float64
                         else v) for k, v in batch.items()}
