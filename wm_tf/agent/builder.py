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
from wm_tf.components.encoder import VectorEncoder
from wm_tf.components.heads import ContinueHead, Decoder, RewardHead, ValueHead
from wm_tf.components.representation import REPRESENTATIONS
from wm_tf.config import Config, ConfigError, MLPConfig
from wm_tf.runtime.environments import EnvSpec
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


def _accepted(constructor, options: dict) -> dict:
  """The entries of `options` that `constructor` takes as arguments.

  Each family member takes the settings it uses (a VAE its beta, a VQ its
  codebook size); the builder offers them all and passes each its own.
  """
  parameters = inspect.signature(constructor).parameters
  return {k: v for k, v in options.items() if k in parameters}


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
  rep = config.representation_learner
  dyn = config.dynamics
  scales = config.world_model.loss_scales
  dtype = dtype_policy(config)
  representation_class = REPRESENTATIONS.get(rep.type)
  representation = representation_class(**_accepted(representation_class, dict(
      latent_dim=rep.latent_dim, feature_dim=config.encoder.units,
      action_dim=spec.action_dim, units=rep.units, layers=rep.layers,
      activation=rep.activation, aux_scale=rep.aux_scale, beta=rep.beta,
      temperature=rep.temperature, projection_dim=rep.projection_dim,
      codebook_size=rep.codebook_size,
      codebook_groups=rep.codebook_groups, commitment=rep.commitment,
      deter_dim=rep.deter_dim, free_nats=rep.free_nats,
      kl_balance=rep.kl_balance)),
      name='representation', dtype=dtype)
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
        components=dyn.components)), name='dynamics', dtype=dtype)
  symlog = lambda model: _in_symlog_space(config, model, model.name)
  try:
    return _world_model(config, spec, name, representation, dynamics, symlog)
  except losses.LossScaleError as e:
    raise ConfigError(str(e)) from None


def _world_model(config, spec, name, representation, dynamics, symlog):
  scales = config.world_model.loss_scales
  dtype = dtype_policy(config)
  return WorldModel(
      encoder=symlog(VectorEncoder(**_mlp(config.encoder), name='encoder',
                                   dtype=dtype)),
      representation=representation,
      dynamics=dynamics,
      reward=symlog(RewardHead(
          **_mlp(config.heads.reward),
          distribution=config.heads.reward.distribution, name='reward',
          dtype=dtype)),
      continue_=ContinueHead(**_mlp(config.heads.continue_), name='continue',
                             dtype=dtype),
      decoder=symlog(Decoder(spec.observation_dim,
                             **_mlp(config.heads.decoder), name='decoder',
                             dtype=dtype)),
      loss_scales=dict(dynamics=scales.dynamics, reward=scales.reward,
                       decoder=scales.decoder, **{'continue': scales.continue_}),
      stop_gradient_target=config.world_model.stop_gradient_target,
      predict_continue=config.world_model.predict_continue,
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


def _build_agent(config: Config, spec: EnvSpec,
                 strategy: Optional[tf.distribute.Strategy]) -> Agent:
  world_model = build_world_model(config, spec)
  w = config.warmup
  warmup = WARMUPS.get(w.type)(
      steps=w.steps, real_ratio=w.real_ratio,
      phases=[Phase(p.end_step, p.world_model_updates, p.actor_updates,
                    p.critic_updates) for p in w.phases])
  actor_critic, mode = _actor_critic(config, spec, warmup)
  wmc = config.world_model
  target_class = WORLD_MODEL_TARGETS.get(wmc.target)
  target = target_class(
      world_model,
      build_world_model(config, spec, name='target_world_model')
      if target_class.needs_own_model else None,
      every=wmc.target_every, tau=wmc.target_tau)
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


def _actor_critic(config: Config, spec: EnvSpec, warmup: WarmupSchedule):
  """(the `ActorCritic` learner, the imagination mode)."""
  dtype = dtype_policy(config)
  a = config.actor
  actor = Actor(spec.action_dim, spec.discrete, spec.low, spec.high,
                units=a.units, layers=a.layers, activation=a.activation,
                min_std=a.min_std, max_std=a.max_std, name='actor',
                dtype=dtype)
  c = config.critic
  critic_args = dict(_mlp(c), distribution=c.distribution, dtype=dtype)
  critic = _in_symlog_space(
      config, ValueHead(**critic_args, name='critic'), 'critic')
  slow_critic = _in_symlog_space(
      config, ValueHead(**critic_args, name='slow_critic'), 'slow_critic')
  imagination = config.imagination
  settings = ActorCriticSettings(
      horizon=imagination.horizon, gamma=imagination.gamma,
      returns_type=config.returns.type, lambda_=config.returns.lambda_,
      n_step=config.returns.n, actor_gradient=a.gradient, entropy=a.entropy,
      return_normalization=a.return_normalization,
      slow_critic_fraction=c.slow_target_fraction,
      sample_dynamics=imagination.sample_dynamics,
      unroll=imagination.unroll)
  mode = IMAGINATION_MODES.get(imagination.mode)(
      real_ratio=imagination.real_ratio,
      real_actor_advantage=imagination.real_actor_advantage)
  if (mode.real_terms and mode.real_ratio > 0 and not spec.discrete and
      imagination.real_actor_advantage == 'signed'):
    raise ConfigError(
        "Config keys imagination.real_actor_advantage='signed' and "
        f"imagination.mode={imagination.mode!r} conflict with the continuous "
        f'action space of env.id={spec.id!r}: the signed weighting lowers '
        'the density of every replayed action worse than expected without '
        "bound, driving the squashed actor's mean to saturation (on "
        'Pendulum-v1 the eval return stayed near -1,400). Allowed for '
        "continuous actions: 'positive'.")
  actor_critic = ActorCritic(
      actor, critic, slow_critic, settings,
      real_terms=mode.real_terms or warmup.real_terms,
      real_ratio=mode.real_ratio,
      real_actor_advantage=mode.real_actor_advantage)
  return actor_critic, mode


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
      world_model, actor_critic.actor, spec.observation_dim,
      jit_compile=config.run.jit,
      planner=planner if mode.acts_with_planner else None,
      uncertainty_threshold=(
          None if not acting.uncertainty else
          calibration.threshold if calibration is not None else
          acting.uncertainty_threshold),
      fallback=fallback_class(planner) if acting.uncertainty else None)


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
