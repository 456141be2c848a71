"""Wires the components, learner and policy from a validated config.

This is the only place that reads the config tree for the agent: the
components receive plain arguments.
"""

from __future__ import annotations

import dataclasses
import inspect

import tensorflow as tf

from wm_tf.agent.learner import ActorCriticSettings, Learner, OptimizerSettings
from wm_tf.agent.policy import Policy
from wm_tf.components.actor import Actor
from wm_tf.components.dynamics import DYNAMICS
from wm_tf.components.encoder import VectorEncoder
from wm_tf.components.heads import ContinueHead, Decoder, RewardHead, ValueHead
from wm_tf.components.representation import REPRESENTATIONS
from wm_tf.config import Config, MLPConfig
from wm_tf.runtime.environments import EnvSpec
from wm_tf.world_model import WorldModel


@dataclasses.dataclass
class Agent:
  world_model: WorldModel
  actor: Actor
  critic: ValueHead
  slow_critic: ValueHead
  learner: Learner
  policy: Policy


def _mlp(c: MLPConfig) -> dict:
  return dict(units=c.units, layers=c.layers, activation=c.activation)


def _accepted(constructor, options: dict) -> dict:
  """The entries of `options` that `constructor` takes as arguments.

  Each family member takes the settings it uses (a VAE its beta, a VQ its
  codebook size); the builder offers them all and passes each its own.
  """
  parameters = inspect.signature(constructor).parameters
  return {k: v for k, v in options.items() if k in parameters}


def build_world_model(config: Config, spec: EnvSpec) -> WorldModel:
  rep = config.representation_learner
  dyn = config.dynamics
  scales = config.world_model.loss_scales
  representation_class = REPRESENTATIONS.get(rep.type)
  representation = representation_class(**_accepted(representation_class, dict(
      latent_dim=rep.latent_dim, feature_dim=config.encoder.units,
      action_dim=spec.action_dim, units=rep.units, layers=rep.layers,
      activation=rep.activation, aux_scale=rep.aux_scale, beta=rep.beta,
      temperature=rep.temperature, projection_dim=rep.projection_dim,
      codebook_size=rep.codebook_size, commitment=rep.commitment,
      deter_dim=rep.deter_dim, free_nats=rep.free_nats)),
      name='representation')
  # A representation with its own dynamics (the RSSM's prior) replaces
  # dynamics.type; config validation refuses a conflicting choice.
  dynamics = representation.own_dynamics()
  if dynamics is None:
    dynamics_class = DYNAMICS.get(dyn.type)
    dynamics = dynamics_class(**_accepted(dynamics_class, dict(
        latent_dim=representation.latent_dim, std=dyn.std,
        fixed_std=dyn.fixed_std, min_std=dyn.min_std, max_std=dyn.max_std,
        units=dyn.units, layers=dyn.layers, activation=dyn.activation,
        members=dyn.members, bootstrap=dyn.bootstrap,
        imagination=dyn.ensemble_imagination,
        components=dyn.components)), name='dynamics')
  return WorldModel(
      encoder=VectorEncoder(**_mlp(config.encoder), name='encoder'),
      representation=representation,
      dynamics=dynamics,
      reward=RewardHead(**_mlp(config.heads.reward), name='reward'),
      continue_=ContinueHead(**_mlp(config.heads.continue_), name='continue'),
      decoder=Decoder(spec.observation_dim, **_mlp(config.heads.decoder),
                      name='decoder'),
      loss_scales=dict(dynamics=scales.dynamics, reward=scales.reward,
                       decoder=scales.decoder, **{'continue': scales.continue_}),
      stop_gradient_target=config.world_model.stop_gradient_target,
      seed=config.seed,
      name='world_model')


def _optimizer(c) -> OptimizerSettings:
  return OptimizerSettings(c.learning_rate, c.clip_norm, c.epsilon)


def build_agent(config: Config, spec: EnvSpec) -> Agent:
  world_model = build_world_model(config, spec)
  a = config.actor
  actor = Actor(spec.action_dim, spec.discrete, spec.low, spec.high,
                units=a.units, layers=a.layers, activation=a.activation,
                min_std=a.min_std, max_std=a.max_std, name='actor')
  c = config.critic
  critic_args = dict(units=c.units, layers=c.layers, activation=c.activation)
  critic = ValueHead(**critic_args, name='critic')
  slow_critic = ValueHead(**critic_args, name='slow_critic')
  settings = ActorCriticSettings(
      horizon=config.imagination.horizon, gamma=config.imagination.gamma,
      returns_type=config.returns.type, lambda_=config.returns.lambda_,
      n_step=config.returns.n, actor_gradient=a.gradient, entropy=a.entropy,
      return_normalization=a.return_normalization,
      slow_critic_fraction=c.slow_target_fraction,
      sample_dynamics=config.imagination.sample_dynamics)
  opt = config.optimizers
  learner = Learner(world_model, actor, critic, slow_critic, settings,
                    _optimizer(opt.world_model), _optimizer(opt.actor),
                    _optimizer(opt.critic), jit_compile=config.run.jit)
  policy = Policy(world_model, actor, spec.observation_dim,
                  jit_compile=config.run.jit)
  learner.build(example_batch(spec))
  return Agent(world_model, actor, critic, slow_critic, learner, policy)


def example_batch(spec: EnvSpec, batch_size: int = 1, length: int = 2
                  ) -> dict:
  """A zero batch [batch_size, length, ...] in the replay's step format."""
  shape = (batch_size, length)
  return {
      'observation': tf.zeros(shape + (spec.observation_dim,)),
      'action': tf.zeros(shape + (spec.action_dim,)),
      'reward': tf.zeros(shape),
      'is_first': tf.zeros(shape, tf.bool),
      'is_terminal': tf.zeros(shape, tf.bool),
      'is_last': tf.zeros(shape, tf.bool),
  }
