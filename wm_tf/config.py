"""Configuration: the one place where settings are read, merged and validated.

A run's configuration is a tree of typed dataclasses (`Config` at the root).
The defaults live here, in code; a YAML file overrides some of them, and
`key.path=value` overrides (from the command line) override the YAML.
`load_config` validates everything before any work starts: an unknown key,
a value of the wrong type or a value outside its allowed set raises
`ConfigError` with one message naming the key and what is allowed.

Components never see this tree: the builders in `wm_tf.agent.builder` read
it and pass plain arguments.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import typing
from typing import Any, Literal, Optional, Sequence, Tuple

import yaml


class ConfigError(ValueError):
  """A configuration key or value that cannot be used."""


# ----------------------------------------------------------------------------
# The schema. Each field's comment is its documentation (docs/configuration.md
# mirrors it; tests/test_docs.py checks).
# ----------------------------------------------------------------------------


@dataclasses.dataclass
class EnvConfig:
  id: str = 'CartPole-v1'  # any gymnasium id with a Box observation space
  num_envs: int = 1  # parallel training environments
  vectorization: Literal['sync', 'async'] = 'sync'  # gymnasium vector env kind
  max_episode_steps: Optional[int] = None  # overrides the registered limit


@dataclasses.dataclass
class RunConfig:
  total_env_steps: int = 10_000  # environment steps to train for
  prefill_steps: int = 1_000  # random-action steps before the first update
  train_ratio: float = 0.5  # gradient updates per environment step
  eval_every: int = 1_000  # env steps between evaluations (0: never)
  eval_episodes: int = 10  # episodes per evaluation, deterministic policy
  log_every: int = 500  # env steps between TensorBoard scalar writes
  checkpoint_every: int = 0  # train steps between checkpoints (0: off)
  # wall seconds between checkpoints (0: off); a kill loses at most this
  checkpoint_seconds: float = 60.0
  checkpoints_to_keep: int = 3  # newest checkpoints kept on disk
  histogram_every: int = 1_000  # env steps between histograms (0: never)
  image_every: int = 2_500  # env steps between prediction images (0: never)
  max_nonfinite_in_a_row: int = 10  # non-finite updates in a row: stop
  jit: bool = True  # compile the train and act steps with XLA
  # Number format of the networks' matmuls: 'bfloat16' computes every
  # layer in bfloat16 with float32 weights (Keras policy 'mixed_bfloat16');
  # distributions, losses, returns and optimizer updates stay float32.
  precision: Literal['float32', 'bfloat16'] = 'float32'


@dataclasses.dataclass
class MLPConfig:
  units: int = 256  # hidden width
  layers: int = 2  # hidden layers (Dense -> LayerNorm -> activation)
  activation: str = 'silu'  # any keras activation name


@dataclasses.dataclass
class EncoderConfig(MLPConfig):
  pass


@dataclasses.dataclass
class RepresentationConfig:
  # How encoder features become the latent state
  # (wm_tf/components/representation.py, wm_tf/components/rssm.py):
  # 'mlp': tanh bottleneck; 'none': the encoder's features are the latent
  # (latent_dim = encoder.units); 'mlp_autoencoder': bottleneck + its own
  # reconstruction of the encoder features; 'vae': Normal posterior, sampled,
  # beta * KL to N(0, 1); 'contrastive': bottleneck + InfoNCE between z_t and
  # z_{t+1}; 'vq': vector-quantised bottleneck (codebook, straight-through);
  # 'rssm': GRU path h + stochastic z, state concat(h, z), KL of posterior
  # to prior with free bits; its prior is the dynamics (dynamics.type must
  # stay 'gaussian', which it then replaces).
  type: Literal['mlp', 'none', 'mlp_autoencoder', 'vae', 'contrastive', 'vq',
                'rssm'] = 'mlp'
  # Size of the latent state; 'rssm': size of z (the state has deter_dim +
  # latent_dim entries); 'none': must equal encoder.units if given.
  latent_dim: int = 64
  units: int = 256
  layers: int = 1
  activation: str = 'silu'
  aux_scale: float = 1.0  # weight of the mlp_autoencoder / contrastive loss
  # 'vae', 'rssm': weight of the KL term. Unset (null): by type, from
  # REPRESENTATION_BETA: 'vae' 0.01 (with 1.0 its posterior collapsed onto
  # the prior on CartPole and Pendulum: the KL is summed over latent_dim
  # dimensions and outweighed the likelihood), 'rssm' 1.0. The other types
  # have no KL term: theirs is always null.
  beta: Optional[float] = None
  temperature: float = 0.1  # 'contrastive': InfoNCE softmax temperature
  projection_dim: int = 32  # 'contrastive': size of the projections
  codebook_size: int = 64  # 'vq': codes in each group's codebook
  # 'vq': the latent is quantised in this many groups of latent_dim / groups
  # entries, each with its own codebook (codebook_size^groups states).
  codebook_groups: int = 8
  commitment: float = 0.25  # 'vq': weight of the commitment loss
  deter_dim: int = 64  # 'rssm': size of the GRU state h
  # 'rssm': per-step KL of the posterior's term below which it gets no
  # gradient (free bits); the prior's term is never cut off.
  free_nats: float = 1.0
  # 'rssm': share of the KL gradient that trains the prior (the rest trains
  # the posterior): beta * (kl_balance * KL(sg q || p)
  #                         + (1 - kl_balance) * max(free_nats, KL(q || sg p))).
  kl_balance: float = 0.8


@dataclasses.dataclass
class DynamicsConfig:
  # p(s_{t+1} | s_t, a_t) (wm_tf/components/dynamics.py): 'gaussian': one
  # diagonal Normal; 'deterministic': a point estimate trained by MSE
  # (stddev 0; std keys unused); 'ensemble': `members` Gaussians, each on a
  # Poisson bootstrap of every batch, stddev = disagreement (+ mean learned
  # std); 'mixture': `components` Gaussians (tfd.MixtureSameFamily).
  # With representation_learner.type 'rssm' this section is unused: the
  # RSSM's prior is the dynamics (keys that change the model are refused).
  type: Literal['gaussian', 'deterministic', 'ensemble', 'mixture'] = (
      'gaussian')
  members: int = 5  # 'ensemble': number of members
  bootstrap: bool = True  # 'ensemble': per-member bootstrap weights
  # 'ensemble': what imagination's sample is: a random member's sample
  # ('sample_member') or Normal(member mean, mean member std) ('mean').
  ensemble_imagination: Literal['sample_member', 'mean'] = 'sample_member'
  components: int = 3  # 'mixture': number of Gaussians
  # 'learned': the network predicts the std; 'fixed': std = fixed_std.
  std: Literal['learned', 'fixed'] = 'learned'
  fixed_std: float = 1e-4  # the design's value; NLL = MSE / (2 std^2)
  min_std: float = 0.01  # floor of a learned std
  max_std: float = 1.0  # ceiling of a learned std
  units: int = 256
  layers: int = 2
  activation: str = 'silu'


@dataclasses.dataclass
class ScalarHeadConfig(MLPConfig):
  # 'normal': Normal(mean, 1), NLL = halved squared error; 'twohot': softmax
  # over 255 bins of symlog(x) on [-20, 20], two-hot cross-entropy
  # (DreamerV3): the gradient does not grow with the scale of the targets.
  # 'twohot' is in symlog space already (imagination.symlog leaves it as is).
  distribution: Literal['normal', 'twohot'] = 'normal'


@dataclasses.dataclass
class HeadsConfig:
  reward: ScalarHeadConfig = dataclasses.field(
      default_factory=ScalarHeadConfig)
  continue_: MLPConfig = dataclasses.field(default_factory=MLPConfig)
  decoder: MLPConfig = dataclasses.field(default_factory=MLPConfig)


@dataclasses.dataclass
class LossScalesConfig:
  dynamics: float = 1.0
  reward: float = 1.0
  continue_: float = 1.0
  decoder: float = 1.0


@dataclasses.dataclass
class WorldModelConfig:
  loss_scales: LossScalesConfig = dataclasses.field(
      default_factory=LossScalesConfig)
  # Stop the gradient of the dynamics target (the next encoded state), so
  # the encoder cannot shrink the dynamics loss by collapsing the latent.
  stop_gradient_target: bool = True
  # Whether imagination and planning discount by the continue head's
  # prediction. False: every imagined step continues (discount gamma), for
  # environments that never terminate (Pendulum). With negative rewards a
  # learned head invites the actor to steer into imagined states where it
  # predicts an end (measured on Pendulum: the head's mean in imagination
  # fell from 0.997 to 0.92 as returns collapsed). The head is still
  # trained and its NLL logged either way.
  predict_continue: bool = True
  # The world model the actor imagines in (its dynamics, reward and continue
  # heads): 'none' the online model; 'copy' a frozen copy refreshed every
  # `target_every` world-model updates; 'ema' an exponential moving average,
  # target <- (1 - target_tau) * target + target_tau * online, every update.
  target: Literal['none', 'copy', 'ema'] = 'none'
  target_every: int = 100  # 'copy': world-model updates between refreshes
  target_tau: float = 0.01  # 'ema': weight of the online model per update


@dataclasses.dataclass
class ActorConfig:
  units: int = 256
  layers: int = 2
  activation: str = 'silu'
  # 'dynamics': backprop returns through the learned dynamics (straight-
  # through for discrete actions); 'reinforce': score function with the
  # critic as baseline.
  gradient: Literal['dynamics', 'reinforce'] = 'dynamics'
  entropy: float = 3e-4  # entropy bonus scale
  min_std: float = 0.1  # continuous actions: std floor of the pre-tanh Normal
  max_std: float = 1.0
  # Divide the advantages by a running percentile range of the returns
  # (max(1, P95 - P5)), so one entropy scale fits any reward scale.
  return_normalization: bool = True


@dataclasses.dataclass
class CriticConfig(ScalarHeadConfig):
  # EMA of the critic used for the value targets (0 disables the copy).
  slow_target_fraction: float = 0.02


@dataclasses.dataclass
class ReturnsConfig:
  type: Literal['lambda', 'monte_carlo', 'n_step', 'gae'] = 'lambda'
  lambda_: float = 0.95  # lambda of the lambda-return and of GAE
  n: int = 5  # n of n-step returns


@dataclasses.dataclass
class ImaginationConfig:
  horizon: int = 15  # imagined steps from each real latent state
  gamma: float = 0.99  # discount
  sample_dynamics: bool = True  # sample the next state (else take the mean)
  # 'backprop': actor and critic learn from imagined rollouts only.
  # 'dyna': critic and actor losses mix imagined and real (replayed) data,
  #   weight real_ratio on the real part (see wm_tf/agent/imagination.py).
  # 'mpc': act by planning in the world model (the `mpc` section); actor and
  #   critic still train as in 'backprop' (the critic values plan ends).
  mode: Literal['backprop', 'dyna', 'mpc'] = 'backprop'
  real_ratio: float = 0.5  # 'dyna': fraction of actor and critic loss from real data
  # 'dyna': how the real actor term weights the log-probability of each
  # replayed action (wm_tf.losses.advantage_weighted_nll). 'signed': by its
  # advantage, so actions worse than V(s) are pushed away; that has no
  # bound for continuous actions (the squashed mean runs to saturation,
  # where the imagined gradient vanishes), so it is refused for them.
  # 'positive': by max(advantage, 0), a weighted maximum likelihood of the
  # better-than-expected actions (bounded: the actor's std has a floor).
  real_actor_advantage: Literal['signed', 'positive'] = 'positive'
  # Encoder inputs, decoder, reward and value targets in symlog space (the
  # heads predict symlog(x); imagination and acting read symexp back).
  symlog: bool = False
  # The H-step rollout in the compiled train step: written out step after
  # step (XLA schedules across steps), or one step compiled as the body of
  # a loop run H times (a smaller program: less memory and time to compile).
  unroll: bool = True


@dataclasses.dataclass
class MPCConfig:
  """Planning in the world model (imagination.mode=mpc, acting.fallback=mpc).

  Actions need a Discrete or bounded Box space.
  """
  # 'random_shooting': best of `samples` uniform sequences; 'cem': the
  # cross-entropy method (wm_tf/agent/mpc.py).
  method: Literal['random_shooting', 'cem'] = 'cem'
  samples: int = 256  # action sequences scored per state and iteration
  horizon: int = 12  # planned steps
  iterations: int = 4  # 'cem': refits of the sampling distribution
  elites: int = 32  # 'cem': best sequences the distribution is refit to
  terminal_value: bool = True  # add the discounted critic value of s_H


@dataclasses.dataclass
class ActingConfig:
  # Act conservatively where the dynamics are unsure: where u(s, a), the
  # mean over dimensions of dynamics(s, a).stddev(), exceeds a threshold,
  # replace the action by `fallback`. The count of such steps is logged as
  # acting/uncertain_steps.
  uncertainty: bool = False
  # The threshold. 'quantile': the running uncertainty_quantile-quantile of
  # u over the replayed (s_t, a_t) of the train batches (logged as
  # learner/uncertainty_threshold), so it follows the latent's scale: of
  # states and actions like the replay's, a fraction 1 - quantile is
  # flagged. 'absolute': uncertainty_threshold itself, in the latent's
  # units, which depend on the representation (with configs/*.yaml, 0.5
  # flagged no step after the first 1,000 env steps on either env).
  uncertainty_reference: Literal['quantile', 'absolute'] = 'quantile'
  uncertainty_quantile: float = 0.95  # 'quantile': of u over replayed steps
  # 'quantile': weight of the running threshold at each world-model update
  # (threshold <- decay * threshold + (1 - decay) * batch quantile). With
  # 0.99 it follows about the last 100 updates, so it lags a std that falls
  # as the model learns; lower values follow faster and move more.
  uncertainty_decay: float = 0.99
  uncertainty_threshold: float = 0.5  # 'absolute': on u
  # 'mean_action': the actor's deterministic action; 'mpc': the planner's
  # first action (the `mpc` section).
  fallback: Literal['mean_action', 'mpc'] = 'mean_action'


@dataclasses.dataclass
class OptimizerConfig:
  learning_rate: float = 1e-4
  clip_norm: float = 100.0  # global gradient-norm clip
  epsilon: float = 1e-8


def _optimizer(learning_rate: float) -> Any:
  return dataclasses.field(
      default_factory=lambda: OptimizerConfig(learning_rate=learning_rate))


@dataclasses.dataclass
class OptimizersConfig:
  # 'separate': one Adam per part, each loss reaching its own variables.
  # 'single': one Adam (world_model's settings) on wm_loss + alpha *
  #   actor_loss + beta * critic_loss over all variables: the actor loss
  #   then also trains the world model (deliberately not separated).
  # 'masked': one Adam (world_model's settings); each loss's gradient
  #   reaches its own part's variables only, clipped per part.
  type: Literal['separate', 'single', 'masked'] = 'separate'
  alpha: float = 1.0  # 'single': scale of the actor loss
  beta: float = 1.0  # 'single': scale of the critic loss
  world_model: OptimizerConfig = _optimizer(1e-4)
  actor: OptimizerConfig = _optimizer(3e-5)
  critic: OptimizerConfig = _optimizer(3e-5)


@dataclasses.dataclass
class WarmupPhaseConfig:
  end_step: int  # the phase lasts while env steps < end_step
  world_model_updates: int = 1  # per train step
  actor_updates: int = 0
  critic_updates: int = 0


@dataclasses.dataclass
class WarmupConfig:
  # 'simple': only the world model trains until `steps` env steps.
  # 'gradual': everything trains; the critic's loss mixes regression on
  #   real-sequence returns (its real ratio m) and on imagined returns
  #   (1 - m), m falling linearly from real_ratio to 0 over `steps`.
  # 'phased': `phases` give the updates of each part per train step; after
  #   the last phase, one update of each. `steps` is not used.
  type: Literal['simple', 'gradual', 'phased'] = 'simple'
  steps: int = 5_000  # env steps of the warmup ('simple', 'gradual')
  real_ratio: float = 1.0  # 'gradual': the critic's real ratio m at step 0
  phases: Tuple[WarmupPhaseConfig, ...] = ()  # 'phased', end_step ascending


@dataclasses.dataclass
class ReplayConfig:
  capacity: int = 1_000_000  # steps kept
  batch_size: int = 16  # sequences per batch
  sequence_length: int = 64  # steps per sequence


@dataclasses.dataclass
class Config:
  env: EnvConfig = dataclasses.field(default_factory=EnvConfig)
  run: RunConfig = dataclasses.field(default_factory=RunConfig)
  encoder: EncoderConfig = dataclasses.field(default_factory=EncoderConfig)
  representation_learner: RepresentationConfig = dataclasses.field(
      default_factory=RepresentationConfig)
  dynamics: DynamicsConfig = dataclasses.field(default_factory=DynamicsConfig)
  heads: HeadsConfig = dataclasses.field(default_factory=HeadsConfig)
  world_model: WorldModelConfig = dataclasses.field(
      default_factory=WorldModelConfig)
  actor: ActorConfig = dataclasses.field(default_factory=ActorConfig)
  critic: CriticConfig = dataclasses.field(default_factory=CriticConfig)
  returns: ReturnsConfig = dataclasses.field(default_factory=ReturnsConfig)
  imagination: ImaginationConfig = dataclasses.field(
      default_factory=ImaginationConfig)
  optimizers: OptimizersConfig = dataclasses.field(
      default_factory=OptimizersConfig)
  mpc: MPCConfig = dataclasses.field(default_factory=MPCConfig)
  acting: ActingConfig = dataclasses.field(default_factory=ActingConfig)
  warmup: WarmupConfig = dataclasses.field(default_factory=WarmupConfig)
  replay: ReplayConfig = dataclasses.field(default_factory=ReplayConfig)
  seed: int = 0


# Python keywords cannot be field names; YAML spells these without the '_'.
_YAML_NAMES = {'continue_': 'continue', 'lambda_': 'lambda'}
_FIELD_NAMES = {v: k for k, v in _YAML_NAMES.items()}

# Bounds checked after types: (path, predicate, what is allowed).
_RANGES = (
    ('env.num_envs', lambda v: v >= 1, 'an integer >= 1'),
    ('run.total_env_steps', lambda v: v >= 1, 'an integer >= 1'),
    ('run.prefill_steps', lambda v: v >= 0, 'an integer >= 0'),
    ('run.train_ratio', lambda v: v > 0, 'a number > 0'),
    ('run.eval_every', lambda v: v >= 0, 'an integer >= 0'),
    ('run.eval_episodes', lambda v: v >= 1, 'an integer >= 1'),
    ('run.log_every', lambda v: v >= 1, 'an integer >= 1'),
    ('run.checkpoint_every', lambda v: v >= 0, 'an integer >= 0'),
    ('run.checkpoint_seconds', lambda v: v >= 0, 'a number >= 0'),
    ('run.checkpoints_to_keep', lambda v: v >= 1, 'an integer >= 1'),
    ('run.histogram_every', lambda v: v >= 0, 'an integer >= 0'),
    ('run.image_every', lambda v: v >= 0, 'an integer >= 0'),
    ('run.max_nonfinite_in_a_row', lambda v: v >= 1, 'an integer >= 1'),
    ('representation_learner.latent_dim', lambda v: v >= 1, 'an integer >= 1'),
    ('dynamics.fixed_std', lambda v: v > 0, 'a number > 0'),
    ('dynamics.min_std', lambda v: v > 0, 'a number > 0'),
    ('dynamics.members', lambda v: v >= 2, 'an integer >= 2'),
    ('dynamics.components', lambda v: v >= 2, 'an integer >= 2'),
    ('representation_learner.aux_scale', lambda v: v >= 0, 'a number >= 0'),
    ('representation_learner.beta', lambda v: v is None or v >= 0,
     'a number >= 0 (or null: by type)'),
    ('representation_learner.temperature', lambda v: v > 0, 'a number > 0'),
    ('representation_learner.projection_dim', lambda v: v >= 1,
     'an integer >= 1'),
    ('representation_learner.codebook_size', lambda v: v >= 2,
     'an integer >= 2'),
    ('representation_learner.codebook_groups', lambda v: v >= 1,
     'an integer >= 1'),
    ('representation_learner.commitment', lambda v: v >= 0, 'a number >= 0'),
    ('representation_learner.deter_dim', lambda v: v >= 1, 'an integer >= 1'),
    ('representation_learner.free_nats', lambda v: v >= 0, 'a number >= 0'),
    ('representation_learner.kl_balance', lambda v: 0 <= v <= 1,
     'a number in [0, 1]'),
    ('actor.entropy', lambda v: v >= 0, 'a number >= 0'),
    ('actor.min_std', lambda v: v > 0, 'a number > 0'),
    ('critic.slow_target_fraction', lambda v: 0 <= v <= 1, 'a number in [0, 1]'),
    ('returns.lambda', lambda v: 0 <= v <= 1, 'a number in [0, 1]'),
    ('returns.n', lambda v: v >= 1, 'an integer >= 1'),
    ('imagination.horizon', lambda v: v >= 1, 'an integer >= 1'),
    ('imagination.gamma', lambda v: 0 <= v <= 1, 'a number in [0, 1]'),
    ('warmup.steps', lambda v: v >= 0, 'an integer >= 0'),
    ('warmup.real_ratio', lambda v: 0 <= v <= 1,
     'a number in [0, 1]'),
    ('world_model.target_every', lambda v: v >= 1, 'an integer >= 1'),
    ('world_model.target_tau', lambda v: 0 < v <= 1, 'a number in (0, 1]'),
    ('imagination.real_ratio', lambda v: 0 <= v <= 1, 'a number in [0, 1]'),
    ('optimizers.alpha', lambda v: v >= 0, 'a number >= 0'),
    ('optimizers.beta', lambda v: v >= 0, 'a number >= 0'),
    ('mpc.samples', lambda v: v >= 1, 'an integer >= 1'),
    ('mpc.horizon', lambda v: v >= 1, 'an integer >= 1'),
    ('mpc.iterations', lambda v: v >= 1, 'an integer >= 1'),
    ('mpc.elites', lambda v: v >= 1, 'an integer >= 1'),
    ('acting.uncertainty_threshold', lambda v: v > 0, 'a number > 0'),
    ('acting.uncertainty_quantile', lambda v: 0 < v < 1,
     'a number in (0, 1)'),
    ('acting.uncertainty_decay', lambda v: 0 <= v < 1, 'a number in [0, 1)'),
    ('replay.capacity', lambda v: v >= 1, 'an integer >= 1'),
    ('replay.batch_size', lambda v: v >= 1, 'an integer >= 1'),
    ('replay.sequence_length', lambda v: v >= 2, 'an integer >= 2'),
) + tuple(
    (f'optimizers.{part}.{key}', check, allowed)
    for part in ('world_model', 'actor', 'critic')
    for key, check, allowed in (
        ('learning_rate', lambda v: math.isfinite(v) and v >= 0,
         'a finite number >= 0'),
        ('clip_norm', lambda v: math.isfinite(v) and v > 0,
         'a finite number > 0'),
        ('epsilon', lambda v: math.isfinite(v) and v > 0,
         'a finite number > 0')))


def _yaml_name(field_name: str) -> str:
  return _YAML_NAMES.get(field_name, field_name)


def _describe(tp: Any) -> str:
  """A human description of an annotation, for error messages."""
  origin = typing.get_origin(tp)
  if origin is Literal:
    return 'one of ' + ', '.join(repr(a) for a in typing.get_args(tp))
  if origin is typing.Union:
    return ' or '.join(_describe(a) for a in typing.get_args(tp))
  if tp is type(None):
    return 'null'
  if dataclasses.is_dataclass(tp):
    return 'a mapping'
  if origin is tuple:
    item = typing.get_args(tp)[0]
    if dataclasses.is_dataclass(item):
      keys = ', '.join(_yaml_name(f.name) for f in dataclasses.fields(item))
      return f'a list of mappings with keys {keys}'
    return f'a list of {_describe(item)}'
  return {int: 'an integer', float: 'a number', bool: 'true or false',
          str: 'a string'}.get(tp, str(tp))


def _coerce(value: Any, tp: Any, path: str) -> Any:
  """Checks `value` against annotation `tp`, converting int -> float."""
  origin = typing.get_origin(tp)
  if dataclasses.is_dataclass(tp):
    return _build(tp, value, path)
  if origin is tuple:  # Tuple[X, ...]: a YAML list of X
    if isinstance(value, (list, tuple)):
      item = typing.get_args(tp)[0]
      return tuple(_coerce(v, item, f'{path}[{i}]')
                   for i, v in enumerate(value))
  elif origin is Literal:
    if value in typing.get_args(tp):
      return value
  elif origin is typing.Union:
    for option in typing.get_args(tp):
      if option is type(None):
        if value is None:
          return None
        continue
      try:
        return _coerce(value, option, path)
      except ConfigError:
        pass
  elif tp is bool:
    if isinstance(value, bool):
      return value
  elif tp is int:
    if isinstance(value, int) and not isinstance(value, bool):
      return value
    if isinstance(value, float) and value.is_integer():
      return int(value)  # 1.0e4 in YAML is a float
    if isinstance(value, str):  # and 1e4 a string
      try:
        number = float(value)
      except ValueError:
        number = None
      if number is not None and number.is_integer():
        return int(number)
  elif tp is float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
      return float(value)
    if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
      try:
        return float(value)
      except ValueError:
        pass
  elif tp is str:
    if isinstance(value, str):
      return value
  raise ConfigError(
      f'Config key {path!r} has value {value!r}; allowed: {_describe(tp)}.')


def _build(cls: type, data: Any, path: str) -> Any:
  """Builds dataclass `cls` from a mapping, rejecting unknown keys."""
  if data is None:
    data = {}
  if isinstance(data, cls):
    return data
  where = path or 'the top level'
  if not isinstance(data, dict):
    raise ConfigError(
        f'Config key {where!r} must be a mapping of keys, got {data!r}.')
  hints = typing.get_type_hints(cls)
  fields = {_yaml_name(f.name): f for f in dataclasses.fields(cls)}
  kwargs = {}
  for key, value in data.items():
    if key not in fields:
      full = f'{path}.{key}' if path else str(key)
      close = difflib.get_close_matches(str(key), list(fields), n=1)
      hint = f' Did you mean {close[0]!r}?' if close else ''
      raise ConfigError(
          f'Unknown config key {full!r}.{hint} Allowed keys in {where}: '
          f'{", ".join(sorted(fields))}.')
    field = fields[key]
    full = f'{path}.{key}' if path else key
    kwargs[field.name] = _coerce(value, hints[field.name], full)
  missing = [_yaml_name(f.name) for f in dataclasses.fields(cls)
             if f.name not in kwargs and f.default is dataclasses.MISSING
             and f.default_factory is dataclasses.MISSING]
  if missing:
    raise ConfigError(
        f'Config key {where!r} is missing required key(s) '
        f'{", ".join(missing)}.')
  return cls(**kwargs)


def _set_path(tree: dict, path: str, value: Any) -> None:
  keys = path.split('.')
  node = tree
  for key in keys[:-1]:
    child = node.get(key)
    if child is None:
      child = node[key] = {}
    if not isinstance(child, dict):
      raise ConfigError(
          f'Override {path!r}: {key!r} holds a value, not a mapping.')
    node = child
  node[keys[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
  """Parses `key.path=value`; the value is read as YAML (1e-4, true, [1,2])."""
  if '=' not in text:
    raise ConfigError(
        f'Override {text!r} must have the form key.path=value, '
        "e.g. 'actor.entropy=1e-3'.")
  path, raw = text.split('=', 1)
  path = path.strip()
  if not path:
    raise ConfigError(f'Override {text!r} has an empty key.')
  try:
    value = yaml.safe_load(raw)
  except yaml.YAMLError as e:
    raise ConfigError(f'Override {text!r}: value is not valid YAML: {e}')
  return path, value


def to_dict(config: Any) -> dict:
  """The config as a plain dict with YAML key names (for saving)."""
  out = {}
  for field in dataclasses.fields(config):
    value = getattr(config, field.name)
    if dataclasses.is_dataclass(value):
      value = to_dict(value)
    elif isinstance(value, tuple):
      value = [to_dict(v) if dataclasses.is_dataclass(v) else v
               for v in value]
    out[_yaml_name(field.name)] = value
  return out


def to_yaml(config: Config) -> str:
  return yaml.safe_dump(to_dict(config), sort_keys=False)


def _check_ranges(config: Config) -> None:
  for path, ok, allowed in _RANGES:
    value = lookup(config, path)
    if not ok(value):
      raise ConfigError(
          f'Config key {path!r} has value {value!r}; allowed: {allowed}.')
  if config.dynamics.min_std > config.dynamics.max_std:
    raise ConfigError(
        'Config keys dynamics.min_std and dynamics.max_std conflict: '
        f'min_std={config.dynamics.min_std} > max_std={config.dynamics.max_std}.')
  if config.actor.min_std > config.actor.max_std:
    raise ConfigError(
        'Config keys actor.min_std and actor.max_std conflict: '
        f'min_std={config.actor.min_std} > max_std={config.actor.max_std}.')
  _check_agent_options(config)


def _check_agent_options(config: Config) -> None:
  """Refuses combinations of the agent's alternatives that make no sense."""
  w = config.warmup
  if w.type == 'phased':
    if not w.phases:
      raise ConfigError(
          "Config key 'warmup.phases' is empty; warmup.type='phased' needs "
          'at least one phase {end_step, world_model_updates, '
          'actor_updates, critic_updates}.')
    previous = 0
    for i, phase in enumerate(w.phases):
      where = f'warmup.phases[{i}]'
      if phase.end_step <= previous:
        raise ConfigError(
            f'Config key {where + ".end_step"!r} has value {phase.end_step}; '
            f'allowed: an integer > {previous} (end steps must increase).')
      previous = phase.end_step
      for name in ('world_model_updates', 'actor_updates', 'critic_updates'):
        if getattr(phase, name) < 0:
          raise ConfigError(
              f'Config key {where + "." + name!r} has value '
              f'{getattr(phase, name)}; allowed: an integer >= 0.')
    if config.optimizers.type == 'single':
      raise ConfigError(
          "Config keys warmup.type='phased' and optimizers.type='single' "
          'conflict: phases count updates per part, but the single '
          'optimizer updates every part with one summed loss. Use '
          "optimizers.type 'separate' or 'masked'.")
  elif w.phases:
    raise ConfigError(
        f'Config keys warmup.phases and warmup.type={w.type!r} conflict: '
        "phases are only used by warmup.type='phased'.")
  if w.type == 'gradual' and w.steps == 0:
    raise ConfigError(
        "Config keys warmup.type='gradual' and warmup.steps=0 conflict: the "
        'real-return mix falls to 0 over warmup.steps, which must be >= 1.')
  if (config.optimizers.type == 'single' and
      config.world_model.target != 'none'):
    raise ConfigError(
        "Config keys optimizers.type='single' and world_model.target="
        f"{config.world_model.target!r} conflict: 'single' lets the actor "
        'loss train the world model through imagination, but with a target '
        'the actor imagines in the target world model, which no optimizer '
        "trains. Use world_model.target='none' or another optimizers.type.")
  mpc = config.mpc
  if mpc.method == 'cem' and mpc.elites > mpc.samples:
    raise ConfigError(
        'Config keys mpc.elites and mpc.samples conflict: '
        f'elites={mpc.elites} > samples={mpc.samples}.')
  acting = config.acting
  if acting.uncertainty and config.imagination.mode == 'mpc':
    raise ConfigError(
        "Config keys acting.uncertainty=true and imagination.mode='mpc' "
        'conflict: the uncertainty fallback replaces actor actions, and '
        'with mpc the agent already acts by planning.')
  if acting.uncertainty and config.dynamics.type == 'deterministic':
    raise ConfigError(
        "Config keys acting.uncertainty=true and dynamics.type="
        "'deterministic' conflict: a point estimate has stddev 0, so it "
        "measures no uncertainty. Use 'gaussian' (learned std), 'ensemble' "
        "or 'mixture'.")
  if (acting.uncertainty and config.dynamics.type == 'gaussian' and
      config.dynamics.std == 'fixed'):
    raise ConfigError(
        "Config keys acting.uncertainty=true and dynamics.std='fixed' "
        "(dynamics.type='gaussian') conflict: a fixed std is the same in "
        "every state, so it measures no uncertainty. Use dynamics.std="
        "'learned' or dynamics.type='ensemble'.")


def lookup(config: Any, path: str) -> Any:
  """The value at a dotted YAML path, e.g. lookup(c, 'returns.lambda')."""
  node = config
  for key in path.split('.'):
    node = getattr(node, _FIELD_NAMES.get(key, key))
  return node


# dynamics keys that choose what kind of model predicts the next state (not
# its size: base configs size every section alike, and keep the sizes for
# a switch to another representation).
_DYNAMICS_KIND_KEYS = ('type', 'std', 'fixed_std', 'members', 'bootstrap',
                       'ensemble_imagination', 'components')


def _check_unused_dynamics(dyn: DynamicsConfig, given: dict) -> None:
  """Refuses dynamics choices the RSSM would silently override.

  With the RSSM, its prior is the dynamics model: a key of `given` (the
  dynamics keys the user set) that changes the kind of model from its
  default would have no effect.
  """
  default = DynamicsConfig()
  changed = [k for k in _DYNAMICS_KIND_KEYS
             if k in given and getattr(dyn, k) != getattr(default, k)]
  if changed:
    raise ConfigError(
        "Config keys representation_learner.type='rssm' and "
        + ', '.join(f'dynamics.{k}={getattr(dyn, k)!r}' for k in changed)
        + " conflict: the RSSM's prior is its dynamics model (a Normal with "
        'a learned std, sized by representation_learner), so these keys '
        "would have no effect. Leave them at their defaults (dynamics.type "
        f"{default.type!r}) or choose another representation learner.")


def _check_world_model_options(config: Config, data: dict) -> None:
  """Refuses representation and dynamics combinations that make no sense.

  `data` is the raw mapping, to tell keys the user gave from defaults.
  """
  rep, dyn = config.representation_learner, config.dynamics
  if rep.type == 'rssm':
    _check_unused_dynamics(dyn, data.get('dynamics') or {})
  given = (data.get('representation_learner') or {}).get('latent_dim')
  if (rep.type == 'none' and given is not None
      and rep.latent_dim != config.encoder.units):
    raise ConfigError(
        "Config keys representation_learner.type='none' and "
        f'representation_learner.latent_dim={rep.latent_dim} conflict: '
        'without a learner the latent is the encoder output, of size '
        f'encoder.units={config.encoder.units}. Drop latent_dim or set it to '
        'encoder.units.')
  if rep.type == 'vq' and rep.latent_dim % rep.codebook_groups:
    raise ConfigError(
        "Config keys representation_learner.type='vq', "
        f'representation_learner.latent_dim={rep.latent_dim} and '
        f'representation_learner.codebook_groups={rep.codebook_groups} '
        'conflict: the latent is split into codebook_groups equal parts, so '
        'latent_dim must be a multiple of codebook_groups.')
  if (dyn.type == 'ensemble' and dyn.ensemble_imagination == 'sample_member'
      and not config.imagination.sample_dynamics):
    raise ConfigError(
        "Config keys dynamics.ensemble_imagination='sample_member' and "
        'imagination.sample_dynamics=false conflict: imagination takes the '
        "ensemble mean and never samples a member. Set "
        "dynamics.ensemble_imagination='mean' or "
        'imagination.sample_dynamics=true.')
  if (config.acting.uncertainty and dyn.type == 'deterministic'
      and rep.type != 'rssm'):
    raise ConfigError(
        "Config keys acting.uncertainty=true and dynamics.type="
        "'deterministic' conflict: a point estimate has stddev 0 everywhere, "
        "so it measures no uncertainty. Use dynamics.type 'ensemble' or "
        "'gaussian' with a learned std.")


# representation_learner.beta when the config leaves it unset, by type
# (the other types have no KL term: theirs is null).
REPRESENTATION_BETA = {'vae': 0.01, 'rssm': 1.0}


def _fill_defaults_by_type(config: Config) -> None:
  """Sets the keys whose default depends on a `type`, if left unset.

  A type without a KL term gets beta null whatever the file says, so that
  the config.yaml of a run saved when beta defaulted to 1.0 for every type
  still matches its config on resume.
  """
  rep = config.representation_learner
  if rep.type not in REPRESENTATION_BETA:
    rep.beta = None
  elif rep.beta is None:
    rep.beta = REPRESENTATION_BETA[rep.type]


# Keys renamed since runs were saved with them: (section, old, new). Saved
# run configs (`config.yaml` of a run directory) still load and resume.
RENAMED_KEYS = (('warmup', 'critic_real_return_mix', 'real_ratio'),)


def _rename_old_keys(data: dict) -> dict:
  data = dict(data)
  for section, old, new in RENAMED_KEYS:
    values = data.get(section)
    if isinstance(values, dict) and old in values:
      values = dict(values)
      if new in values:
        raise ConfigError(f'Config keys {section}.{old} and {section}.{new} '
                          f'conflict: {old} is the old name of {new}; '
                          f'allowed: {section}.{new} alone.')
      values[new] = values.pop(old)
      data[section] = values
  return data


def from_dict(data: dict) -> Config:
  """Validates a plain dict (YAML names) into a `Config`."""
  data = _rename_old_keys(data)
  config = _build(Config, data, '')
  _fill_defaults_by_type(config)
  _check_ranges(config)
  _check_world_model_options(config, data)
  return config


# The configs/ folder beside the wm_tf package (a source checkout, as
# `pip install -e .` leaves it), where the launchers' default --config is.
CONFIGS_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs')


def resolve_config_path(path: str) -> str:
  """`path` if it exists; else the same relative path, or file name, in
  the source checkout (so `--config=configs/cartpole.yaml` works from any
  working directory); else `path` unchanged."""
  if os.path.exists(path) or os.path.isabs(path):
    return path
  for candidate in (os.path.join(os.path.dirname(CONFIGS_DIR), path),
                    os.path.join(CONFIGS_DIR, path)):
    if os.path.exists(candidate):
      return candidate
  return path


def load_config(path: Optional[str] = None,
                overrides: Sequence[str] = ()) -> Config:
  """Reads a YAML file, applies `key.path=value` overrides and validates.

  Args:
    path: a YAML file, or None for the defaults alone.
    overrides: strings `key.path=value`, applied in order after the file.

  Returns:
    The validated `Config`.

  Raises:
    ConfigError: the file is missing or malformed, or a key or value is not
      allowed; the message names the key and what is allowed.
  """
  data: dict = {}
  if path is not None:
    try:
      with open(resolve_config_path(path)) as f:
        data = yaml.safe_load(f) or {}
    except FileNotFoundError:
      shipped = sorted(n for n in os.listdir(CONFIGS_DIR)
                       if n.endswith('.yaml')) if os.path.isdir(
                           CONFIGS_DIR) else []
      raise ConfigError(
          f'Config file {path!r} does not exist (looked in the working '
          f'directory and in {CONFIGS_DIR}, which holds '
          f'{", ".join(shipped) or "nothing"}).') from None
    except yaml.YAMLError as e:
      raise ConfigError(f'Config file {path!r} is not valid YAML: {e}') from None
    if not isinstance(data, dict):
      raise ConfigError(f'Config file {path!r} must hold a mapping of keys.')
  for text in overrides:
    key, value = parse_override(text)
    _set_path(data, key, value)
  return from_dict(data)


def reference_rows(cls: type = Config, prefix: str = '') -> list:
  """(yaml key path, default, comment) for every leaf key, in schema order.

  The comment is the one written beside the field in this module (the
  schema is its own documentation); `python -m wm_tf.config` prints them as
  the markdown table of docs/configuration.md.
  """
  import inspect
  import re
  comments = {}
  for klass in reversed(cls.__mro__):
    if not dataclasses.is_dataclass(klass):
      continue
    pending = []
    for line in inspect.getsource(klass).splitlines():
      stripped = line.strip()
      if stripped.startswith('#'):
        pending.append(stripped.lstrip('#').strip())
        continue
      match = re.match(r'(\w+)\s*:[^#]*?(?:#\s*(.*))?$', stripped)
      if match and not stripped.startswith(('def ', 'class ', '@')):
        text = ' '.join(pending + ([match.group(2)] if match.group(2) else []))
        if text:
          comments[match.group(1)] = text
      pending = []
  rows = []
  instance = cls()
  for field in dataclasses.fields(cls):
    path = prefix + _yaml_name(field.name)
    value = getattr(instance, field.name)
    if dataclasses.is_dataclass(value):
      rows.extend(reference_rows(type(value), path + '.'))
    else:
      rows.append((path, value, comments.get(field.name, '')))
  return rows


def reference_markdown() -> str:
  lines = ['| key | default | meaning |', '| --- | --- | --- |']
  for path, default, comment in reference_rows():
    shown = yaml.safe_dump(default, default_flow_style=True).strip()
    shown = shown.removesuffix('...').strip()
    lines.append(f'| `{path}` | `{shown}` | {comment} |')
  return '\n'.join(lines)


if __name__ == '__main__':
  print(reference_markdown())
