"""Wires the components, learner and policy from a validated config.

This is the only place that reads the config tree for the agent: the
components receive plain arguments, among them their Keras dtype policy
(`run.precision`, set per layer: no global policy is touched, so agents of
either precision can live in one process).
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
from typing import Optional

import tensorflow as tf

from wm_tf import losses
from wm_tf.agent.imagination import IMAGINATION_MODES
from wm_tf.agent.actor_critic import ActorCritic, ActorCriticSettings
from wm_tf.agent.learner import Learner
from wm_tf.agent.mpc import PLANNERS, check_action_space
from wm_tf.agent.optimizers import OPTIMIZER_LAYOUTS, OptimizerSettings
from wm_tf.agent.policy import FALLBACKS, Policy, UncertaintyCalibration
from wm_tf.agent.symlog import SymlogHead, SymlogInputs
from wm_tf.agent.targets import WORLD_MODEL_TARGETS
from wm_tf.agent.warmup import WARMUPS, Phase, WarmupSchedule
from wm_tf.components.actor import Actor
from wm_tf.components.dynamics import DYNAMICS
from wm_tf.components.conv import ConvDecoder, ConvEncoder
from wm_tf.components.encoder import VectorEncoder
from wm_tf.components.heads import ContinueHead, Decoder, RewardHead, ValueHead
from wm_tf.components.multi_key import MultiKeyDecoder, MultiKeyEncoder
from wm_tf.components.representation import REPRESENTATIONS
from wm_tf.config import Config, ConfigError, MLPConfig
from wm_tf.config.validation import route_observation_keys
from wm_tf.specs import EnvSpec
from wm_tf.world_model import WorldModel


@dataclasses.dataclass
class Agent:
  world_model: WorldModel
  actor: Actor
  critic: ValueHead
  slow_critic: ValueHead
  learner: Learner  # composes world_model and actor_critic
  policy: Policy
  # What each train step updates (config `warmup`); the trainer calls
  # `warmup.update(learner, next_batch, next_seed, env_step)`.
  warmup: Optional[WarmupSchedule] = None


def _mlp(c: MLPConfig) -> dict:
  return dict(units=c.units, layers=c.layers, activation=c.activation)


# Keras arguments every component takes through **kwargs.
_KERAS_ARGUMENTS = ('name', 'dtype')


def check_arguments(cls, arguments: dict) -> None:
  """Refuses `arguments` unless they are exactly what `cls`'s constructor names.

  A setting passed to a constructor without that parameter, or a parameter
  (with or without a default) the builder does not pass, would drop a
  setting silently, e.g. after a parameter is renamed; either is a
  TypeError naming the class and the argument.
  """
  named = [p.name for p in inspect.signature(cls).parameters.values()
           if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                         inspect.Parameter.KEYWORD_ONLY)]
  for argument in arguments:
    if argument not in named:
      raise TypeError(
          f'{cls.__name__} has no parameter {argument!r}, which the builder '
          f'passes; its parameters: {", ".join(named)}.')
  for parameter in named:
    if parameter not in arguments:
      raise TypeError(
          f'{cls.__name__} has the parameter {parameter!r}, which the '
          'builder does not pass (its setting would be silently left at '
          'the default).')


def construct(cls, arguments: dict, **keras_arguments):
  """cls(**arguments, **keras_arguments), its arguments checked first."""
  check_arguments(cls, arguments)
  unknown = set(keras_arguments) - set(_KERAS_ARGUMENTS)
  if unknown:
    raise TypeError(f'{cls.__name__}: {sorted(unknown)} are not Keras '
                    f'arguments ({", ".join(_KERAS_ARGUMENTS)}).')
  return cls(**arguments, **keras_arguments)


def representation_arguments(config: Config, spec: EnvSpec) -> dict:
  """The constructor arguments of `representation_learner.type`'s class."""
  rep = config.representation_learner
  common = dict(latent_dim=rep.latent_dim, units=rep.units, layers=rep.layers,
                activation=rep.activation)
  by_type = {
      'mlp': common,
      'none': dict(feature_dim=encoder_output_dim(config, spec)),
      'mlp_autoencoder': dict(common,
                              feature_dim=encoder_output_dim(config, spec),
                              aux_scale=rep.aux_scale),
      'vae': dict(common, beta=rep.beta),
      'contrastive': dict(common, temperature=rep.temperature,
                          projection_dim=rep.projection_dim,
                          aux_scale=rep.aux_scale),
      'vq': dict(common, codebook_size=rep.codebook_size,
                 codebook_groups=rep.codebook_groups,
                 commitment=rep.commitment),
      'rssm': dict(common, deter_dim=rep.deter_dim,
                   action_dim=spec.action_dim, latent=rep.latent,
                   classes=rep.classes, unimix=rep.unimix,
                   free_nats=rep.free_nats, kl_balance=rep.kl_balance,
                   beta=rep.beta, dyn_scale=rep.dyn_scale,
                   rep_scale=rep.rep_scale, unroll=rep.unroll),
  }
  return _of_type(by_type, rep.type, 'representation_learner.type')


def dynamics_arguments(config: Config, latent_dim: int) -> dict:
  """The constructor arguments of `dynamics.type`'s class."""
  dyn = config.dynamics
  network = dict(latent_dim=latent_dim, units=dyn.units, layers=dyn.layers,
                 activation=dyn.activation)
  gaussian = dict(network, std=dyn.std, fixed_std=dyn.fixed_std,
                  min_std=dyn.min_std, max_std=dyn.max_std)
  by_type = {
      'gaussian': gaussian,
      'deterministic': network,
      'ensemble': dict(gaussian, members=dyn.members, bootstrap=dyn.bootstrap,
                       imagination=dyn.ensemble_imagination),
      'mixture': dict(gaussian, components=dyn.components),
  }
  return _of_type(by_type, dyn.type, 'dynamics.type')


def _of_type(by_type: dict, kind: str, key: str) -> dict:
  if kind not in by_type:
    raise TypeError(f'The builder has no arguments for {key} {kind!r}; '
                    'each registered type needs an entry.')
  return by_type[kind]


# run.precision -> the dtype policy of every layer. None keeps Keras's
# default policy (float32 unless a program set another global policy).
_DTYPE_POLICIES = {'float32': None, 'bfloat16': 'mixed_bfloat16'}


def dtype_policy(config: Config) -> Optional[str]:
  """The Keras dtype policy the components are built with."""
  return _DTYPE_POLICIES[config.run.precision]


def _in_symlog_space(config: Config, model, name: str):
  """imagination.symlog: the head's targets or the encoder's inputs.

  A head whose distribution is in symlog space already (two-hot) is
  returned as it is.
  """
  if not config.imagination.symlog or getattr(model, 'in_symlog_space',
                                              False):
    return model
  wrapper = SymlogInputs if name == 'encoder' else SymlogHead
  return wrapper(model, name=name)


def build_world_model(config: Config, spec: EnvSpec,
                      name: str = 'world_model') -> WorldModel:
  dtype = dtype_policy(config)
  representation = construct(
      REPRESENTATIONS.get(config.representation_learner.type),
      representation_arguments(config, spec), name='representation',
      dtype=dtype)
  # A representation with its own dynamics (the RSSM's prior) replaces
  # dynamics.type; config validation refuses a conflicting choice.
  dynamics = representation.own_dynamics()
  if dynamics is None:
    dynamics = construct(
        DYNAMICS.get(config.dynamics.type),
        dynamics_arguments(config, representation.latent_dim),
        name='dynamics', dtype=dtype)
  symlog = lambda model: _in_symlog_space(config, model, model.name)
  try:
    return _world_model(config, spec, name, representation, dynamics, symlog)
  except losses.LossScaleError as e:
    raise ConfigError(str(e)) from None


def _conv_arguments(config: Config, activation: str) -> dict:
  e = config.encoder
  # norm: the convolutions are normalised as the MLPs are (LayerNorm).
  return dict(depth=e.cnn_depth, kernel=e.cnn_kernel,
              min_resolution=e.cnn_min_resolution, activation=activation,
              norm=True)


def encoder_output_dim(config: Config, spec: EnvSpec) -> int:
  """F, the size of the multi-key encoder's features: encoder.units for
  the vector keys plus each image key's CNN features."""
  vectors, images = route_observation_keys(config, spec.observations)['encoder']
  size = config.encoder.units if vectors else 0
  if images:
    conv = ConvEncoder(**_conv_arguments(config, config.encoder.activation))
    size += sum(conv.output_dim(spec.observation(k).shape) for k in images)
  return size


def build_encoder(config: Config, spec: EnvSpec, symlog,
                  dtype=None) -> MultiKeyEncoder:
  """The multi-key encoder of the keys `encoder.mlp_keys` / `cnn_keys`
  select; its MLP branch (in symlog space with imagination.symlog) is the
  `VectorEncoder` of `encoder`."""
  vectors, images = route_observation_keys(config, spec.observations)['encoder']
  mlp = None
  if vectors:
    mlp = symlog(construct(VectorEncoder, _mlp(config.encoder),
                           name='encoder', dtype=dtype))
  cnn = []
  if images:
    cnn = [construct(ConvEncoder,
                     _conv_arguments(config, config.encoder.activation),
                     name=f'cnn_encoder_{i}', dtype=dtype)
           for i in range(len(images))]
  return MultiKeyEncoder(vectors, images, mlp, cnn, name='encoder')


def build_decoder(config: Config, spec: EnvSpec, dtype=None
                  ) -> MultiKeyDecoder:
  """The multi-key decoder of the keys `heads.decoder.mlp_keys` /
  `cnn_keys` select (by default those the encoder reads)."""
  vectors, images = route_observation_keys(config, spec.observations)['decoder']
  sizes = [spec.observation(k).shape[0] for k in vectors]
  mlp = None
  if vectors:
    mlp = construct(Decoder, dict(_mlp(config.heads.decoder),
                                  observation_dim=sum(sizes)),
                    name='decoder', dtype=dtype)
  cnn = []
  if images:
    cnn = [construct(ConvDecoder, dict(
        _conv_arguments(config, config.heads.decoder.activation),
        shape=spec.observation(k).shape), name=f'cnn_decoder_{i}',
        dtype=dtype) for i, k in enumerate(images)]
  return MultiKeyDecoder(vectors, sizes, images, mlp, cnn,
                         symlog=config.imagination.symlog, name='decoder')


def _world_model(config, spec, name, representation, dynamics, symlog):
  scales = config.world_model.loss_scales
  dtype = dtype_policy(config)
  heads = config.heads
  return WorldModel(
      encoder=build_encoder(config, spec, symlog, dtype),
      representation=representation,
      dynamics=dynamics,
      reward=symlog(construct(
          RewardHead,
          dict(_mlp(heads.reward), distribution=heads.reward.distribution),
          name='reward', dtype=dtype)),
      continue_=construct(ContinueHead, _mlp(heads.continue_),
                          name='continue', dtype=dtype),
      decoder=build_decoder(config, spec, dtype),
      loss_scales=dict(dynamics=scales.dynamics, reward=scales.reward,
                       decoder=scales.decoder, **{'continue': scales.continue_}),
      stop_gradient_target=config.world_model.stop_gradient_target,
      predict_continue=config.world_model.predict_continue,
      terminal_weight=config.world_model.terminal_weight,
      seed=config.seed,
      name=name)


def _optimizer(c) -> OptimizerSettings:
  return OptimizerSettings(c.learning_rate, c.clip_norm, c.epsilon)


def _optimizer_layout(config: Config, world_model: WorldModel,
                      actor_critic: ActorCritic):
  """The layout of `optimizers.type`; a non-joint one hands each learner
  its optimizers."""
  opt = config.optimizers
  layout = OPTIMIZER_LAYOUTS.get(opt.type)(
      {'world_model': _optimizer(opt.world_model),
       'actor': _optimizer(opt.actor), 'critic': _optimizer(opt.critic)},
      alpha=opt.alpha, beta=opt.beta)
  if not layout.joint:
    world_model.use_optimizer(layout.optimizers['world_model'],
                              opt.world_model.clip_norm)
    actor_critic.use_optimizers(
        layout.optimizers['actor'], layout.optimizers['critic'],
        opt.actor.clip_norm, opt.critic.clip_norm)
  return layout


def build_agent(config: Config, spec: EnvSpec,
                strategy: Optional[tf.distribute.Strategy] = None) -> Agent:
  """The agent of `config` for environment `spec`.

  Args:
    config: a validated `Config`.
    spec: the environment's spaces.
    strategy: None for one device, or a tf.distribute strategy: every
      variable (models, optimizer slots, counters) is then created in its
      scope and the learner's updates run once per replica (see
      `wm_tf.runtime.distribution`).
  """
  scope = (strategy.scope() if strategy is not None
           else contextlib.nullcontext())
  with scope:
    return _build_agent(config, spec, strategy)


def _actor_and_critics(config: Config, spec: EnvSpec):
  """(actor, critic, slow critic), the critics in symlog space if asked."""
  dtype = dtype_policy(config)
  a = config.actor
  actor = construct(Actor, dict(
      action_dim=spec.action_dim, discrete=spec.discrete, low=spec.low,
      high=spec.high, units=a.units, layers=a.layers, activation=a.activation,
      min_std=a.min_std, max_std=a.max_std), name='actor', dtype=dtype)
  c = config.critic
  critic_args = dict(_mlp(c), distribution=c.distribution)
  critic = _in_symlog_space(config, construct(
      ValueHead, critic_args, name='critic', dtype=dtype), 'critic')
  slow_critic = _in_symlog_space(config, construct(
      ValueHead, critic_args, name='slow_critic', dtype=dtype), 'slow_critic')
  return actor, critic, slow_critic


def _imagination_mode(config: Config, spec: EnvSpec):
  imagination = config.imagination
  mode = IMAGINATION_MODES.get(imagination.mode)(
      real_ratio=imagination.real_ratio,
      real_actor_advantage=imagination.real_actor_advantage)
  # The one rule that needs the environment, so the config cannot check it.
  if (mode.real_terms and mode.real_ratio > 0 and not spec.discrete and
      imagination.real_actor_advantage == 'signed'):
    raise ConfigError(
        "Config keys imagination.real_actor_advantage='signed' and "
        f"imagination.mode={imagination.mode!r} conflict with the continuous "
        f'action space of env.id={spec.id!r}: the signed weighting lowers '
        'the density of every replayed action worse than expected without '
        "bound, driving the squashed actor's mean to saturation. Allowed "
        "for continuous actions: 'positive'.")
  return mode


def _warmup(config: Config) -> WarmupSchedule:
  w = config.warmup
  return WARMUPS.get(w.type)(
      steps=w.steps, real_ratio=w.real_ratio,
      phases=[Phase(p.end_step, p.world_model_updates, p.actor_updates,
                    p.critic_updates) for p in w.phases])


def actor_gradient(gradient: str, spec: EnvSpec) -> str:
  """actor.gradient with 'auto' resolved for the env's action space."""
  if gradient != 'auto':
    return gradient
  return 'reinforce' if spec.discrete else 'dynamics'


def _actor_critic(config: Config, spec: EnvSpec, warmup: WarmupSchedule):
  """(the `ActorCritic` learner, the imagination mode)."""
  actor, critic, slow_critic = _actor_and_critics(config, spec)
  a, c, imagination = config.actor, config.critic, config.imagination
  settings = ActorCriticSettings(
      horizon=imagination.horizon, gamma=imagination.gamma,
      returns_type=config.returns.type, lambda_=config.returns.lambda_,
      n_step=config.returns.n, actor_gradient=actor_gradient(a.gradient, spec),
      entropy=a.entropy,
      return_normalization=a.return_normalization,
      slow_critic_fraction=c.slow_target_fraction,
      sample_dynamics=imagination.sample_dynamics,
      unroll=imagination.unroll)
  mode = _imagination_mode(config, spec)
  actor_critic = ActorCritic(
      actor, critic, slow_critic, settings,
      real_terms=mode.real_terms or warmup.real_terms,
      real_ratio=mode.real_ratio,
      real_actor_advantage=mode.real_actor_advantage,
      loss_scales=dataclasses.asdict(config.actor_critic.loss_scales))
  return actor_critic, mode


def _world_model_target(config: Config, spec: EnvSpec, world_model):
  wmc = config.world_model
  target_class = WORLD_MODEL_TARGETS.get(wmc.target)
  return target_class(
      world_model,
      build_world_model(config, spec, name='target_world_model')
      if target_class.needs_own_model else None,
      every=wmc.target_every, tau=wmc.target_tau)


def _policy(config: Config, spec: EnvSpec, world_model: WorldModel,
            actor_critic: ActorCritic, mode, calibration) -> Policy:
  """The acting policy: the actor, a planner, or the actor with an
  uncertainty fallback (its threshold calibrated by the learner's updates
  when `calibration` is given)."""
  acting = config.acting
  fallback_class = FALLBACKS.get(acting.fallback)
  needs_planner = mode.acts_with_planner or (
      acting.uncertainty and fallback_class.needs_planner)
  planner = None
  if needs_planner:
    user = ("imagination.mode='mpc'" if mode.acts_with_planner
            else "acting.fallback='mpc'")
    check_action_space(spec.discrete, spec.low, spec.high, spec.id, user)
    m = config.mpc
    planner = PLANNERS.get(m.method)(
        world_model, actor_critic.critic if m.terminal_value else None,
        spec.action_dim, spec.discrete, spec.low, spec.high,
        horizon=m.horizon, samples=m.samples, iterations=m.iterations,
        elites=m.elites, gamma=config.imagination.gamma)
  return Policy(
      world_model, actor_critic.actor, spec.observations,
      jit_compile=config.run.jit,
      planner=planner if mode.acts_with_planner else None,
      uncertainty_threshold=(
          None if not acting.uncertainty else
          calibration.threshold if calibration is not None else
          acting.uncertainty_threshold),
      fallback=fallback_class(planner) if acting.uncertainty else None)


def _build_agent(config: Config, spec: EnvSpec,
                 strategy: Optional[tf.distribute.Strategy]) -> Agent:
  world_model = build_world_model(config, spec)
  warmup = _warmup(config)
  actor_critic, mode = _actor_critic(config, spec, warmup)
  target = _world_model_target(config, spec, world_model)
  acting = config.acting
  calibration = None
  if acting.uncertainty and acting.uncertainty_reference == 'quantile':
    calibration = UncertaintyCalibration(acting.uncertainty_quantile,
                                         acting.uncertainty_decay)
  learner = Learner(world_model, actor_critic,
                    _optimizer_layout(config, world_model, actor_critic),
                    jit_compile=config.run.jit,
                    target=target, uncertainty_calibration=calibration,
                    strategy=strategy)
  policy = _policy(config, spec, world_model, actor_critic, mode,
                   calibration)
  learner.build(example_batch(spec))
  return Agent(world_model, actor_critic.actor, actor_critic.critic,
               actor_critic.slow_critic, learner, policy, warmup)


def example_batch(spec: EnvSpec, batch_size: int = 1, length: int = 2
                  ) -> dict:
  """A zero batch [batch_size, length, ...] in the replay's step format."""
  shape = (batch_size, length)
  return {
      **{o.key: tf.zeros(shape + o.shape, o.dtype)
         for o in spec.observations},
      'action': tf.zeros(shape + (spec.action_dim,)),
      'reward': tf.zeros(shape),
      'is_first': tf.zeros(shape, tf.bool),
      'is_terminal': tf.zeros(shape, tf.bool),
      'is_last': tf.zeros(shape, tf.bool),
  }
