"""The configuration schema: a tree of typed dataclasses, `Config` at the root.

The defaults live here, in code: they are the one recipe (the defaults
of DESIGN.md where it does not depart from them; where it does, the preset
`design` in presets.yaml restores the design's value and docs/design.md
gives the measurements). Each field's comment is its documentation:
`wm_tf.config.reference` turns them into the table of docs/configuration.md
(tests/test_docs.py checks that the page is that table). YAML spells two
field names without their trailing '_' (`continue`, `lambda`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, Optional, Tuple

# The env section (its families' settings) has its own module.
from wm_tf.config.env_schema import (AtariConfig, DMCConfig,  # noqa: F401
                                     EnvConfig)


class ConfigError(ValueError):
  """A configuration key or value that cannot be used."""


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
  # Vector observation keys the MLP encodes (docs/observations.md): a Python
  # regex matched against whole key names. Keys neither regex selects are
  # not encoded; at least one key must be.
  mlp_keys: str = '.*'
  # uint8 image keys the CNNs encode (one CNN per key), a regex as mlp_keys.
  cnn_keys: str = '.*'
  cnn_depth: int = 32  # channels of the CNN's first convolution
  cnn_kernel: int = 4  # kernel size of the CNN's convolutions
  # The CNN halves the image's shorter side down to this size (so it must
  # be cnn_min_resolution times a power of two: 4 takes 16, 32, 64, ...).
  cnn_min_resolution: int = 4


@dataclasses.dataclass
class DecoderConfig(MLPConfig):
  # Vector keys reconstructed, a regex as encoder.mlp_keys (null: the
  # encoder's). The decoder's loss is the sum of the keys' NLLs.
  mlp_keys: Optional[str] = None
  # Image keys reconstructed (null: encoder.cnn_keys); the image decoder
  # mirrors encoder.cnn_depth, cnn_kernel and cnn_min_resolution.
  cnn_keys: Optional[str] = None


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
                'rssm'] = 'rssm'
  # Size of the latent state; 'rssm': the number of stochastic variables of
  # z: with latent 'gaussian' z has latent_dim entries, with 'categorical'
  # latent_dim one-hot categoricals of `classes` classes (DreamerV3's
  # `stoch`: 32 with classes 32), latent_dim * classes entries; the state
  # has deter_dim + those entries. 'none': must equal encoder.units if given.
  latent_dim: int = 64
  units: int = 256
  layers: int = 1
  activation: str = 'silu'
  aux_scale: float = 1.0  # weight of the mlp_autoencoder / contrastive loss
  # 'vae', 'rssm' (latent 'gaussian'): weight of the KL term. Unset (null):
  # by type, from REPRESENTATION_BETA: 'vae' 0.01 (the KL is summed over
  # latent_dim dimensions and can outweigh the likelihood, collapsing the
  # posterior onto the prior), 'rssm' 1.0. The other types, and the
  # categorical latent (dyn_scale, rep_scale), have no beta: theirs is
  # always null.
  beta: Optional[float] = None
  temperature: float = 0.1  # 'contrastive': InfoNCE softmax temperature
  projection_dim: int = 32  # 'contrastive': size of the projections
  codebook_size: int = 64  # 'vq': codes in each group's codebook
  # 'vq': the latent is quantised in this many groups of latent_dim / groups
  # entries, each with its own codebook (codebook_size^groups states).
  codebook_groups: int = 8
  commitment: float = 0.25  # 'vq': weight of the commitment loss
  deter_dim: int = 64  # 'rssm': size of the GRU state h
  # 'rssm': the stochastic state z. 'gaussian': a diagonal Normal of
  # latent_dim entries, KL weighted by beta and kl_balance. 'categorical':
  # latent_dim one-hot categoricals of `classes` classes, sampled
  # straight-through, probabilities mixed with `unimix` uniform, KL weighted
  # by dyn_scale and rep_scale (DreamerV2/V3). The state is concat(h, z).
  latent: Literal['gaussian', 'categorical'] = 'gaussian'
  classes: int = 32  # 'rssm' latent 'categorical': classes per categorical
  # 'rssm' latent 'categorical': weight of the uniform distribution mixed
  # into the prior's and posterior's class probabilities (each class keeps
  # at least unimix / classes), so the KL stays finite.
  unimix: float = 0.01
  # 'rssm': per-step KL (summed over z) below which a KL term gets no
  # gradient (free bits). 'gaussian': the posterior's term only (the
  # prior's is never cut off); 'categorical': both terms.
  free_nats: float = 1.0
  # 'rssm' latent 'gaussian': share of the KL gradient that trains the prior
  # (the rest trains the posterior): beta * (kl_balance * KL(sg q || p)
  #                         + (1 - kl_balance) * max(free_nats, KL(q || sg p))).
  kl_balance: float = 0.8
  # 'rssm' latent 'categorical': the KL loss is
  #   dyn_scale * max(free_nats, KL(sg q || p))     (trains the prior)
  #   + rep_scale * max(free_nats, KL(q || sg p))   (trains the posterior).
  # The gaussian latent refuses them (it has beta and kl_balance).
  dyn_scale: float = 0.5
  rep_scale: float = 0.1
  # 'rssm': the posterior over a replayed [B, T] window written out step
  # after step (XLA schedules across steps), or one step compiled as the
  # body of a loop run T times (a program T times smaller to compile).
  unroll: bool = False


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
  decoder: DecoderConfig = dataclasses.field(default_factory=DecoderConfig)


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
  # predicts an end (docs/design.md). The head is still trained and its
  # NLL logged either way.
  predict_continue: bool = True
  # Weight of a terminal step in the continue head's NLL (a weighted mean
  # over the steps): terminal steps are rare (one per episode), so with 1
  # (the plain likelihood) the head stays soft where episodes end. Above 1
  # it is sharper there, at the cost of predicting ends too often elsewhere.
  terminal_weight: float = 1.0
  # The world model the actor imagines in (its dynamics, reward and continue
  # heads): 'none' the online model; 'copy' a frozen copy refreshed every
  # `target_every` world-model updates; 'ema' an exponential moving average,
  # target <- (1 - target_tau) * target + target_tau * online, every update.
  target: Literal['none', 'copy', 'ema'] = 'none'
  target_every: int = 100  # 'copy': world-model updates between refreshes
  target_tau: float = 0.01  # 'ema': weight of the online model per update


@dataclasses.dataclass
class ActorCriticLossScalesConfig:
  actor: float = 1.0  # the imagined actor term
  critic: float = 1.0  # the imagined critic term
  # The critic's likelihood of its slow copy's mean on the imagined states,
  # a regulariser that keeps the critic near its own running average
  # (DreamerV3's slow-critic regulariser; 0: not computed).
  critic_slow: float = 0.0
  actor_real: float = 1.0  # the replayed actions' term (Dyna)
  critic_real: float = 1.0  # the replayed sequences' returns (Dyna, warmup)


@dataclasses.dataclass
class ActorCriticConfig:
  # Weights of the actor-critic learner's named loss terms
  # (wm_tf/agent/actor_critic.py); the real ratio mixes imagined and real
  # terms as well, so with Dyna a part's loss is
  # scale * (1 - ratio) * imagined + scale_real * ratio * real.
  loss_scales: ActorCriticLossScalesConfig = dataclasses.field(
      default_factory=ActorCriticLossScalesConfig)


@dataclasses.dataclass
class ActorConfig:
  units: int = 256
  layers: int = 2
  activation: str = 'silu'
  # 'dynamics': backprop returns through the learned dynamics (straight-
  # through for discrete actions); 'reinforce': score function with the
  # critic as baseline; 'auto': 'reinforce' for discrete actions (a
  # straight-through sample is a poor gradient of a one-hot choice) and
  # 'dynamics' for continuous ones (DreamerV2's rule), so one config fits
  # both kinds of action space.
  gradient: Literal['auto', 'dynamics', 'reinforce'] = 'auto'
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
  sample_dynamics: bool = False  # sample the next state (else take the mean)
  # 'backprop': actor and critic learn from imagined rollouts only.
  # 'dyna': critic and actor losses mix imagined and real (replayed) data,
  #   weight real_ratio on the real part (see wm_tf/agent/imagination.py).
  # 'mpc': act by planning in the world model (the `mpc` section); actor and
  #   critic still train as in 'backprop' (the critic values plan ends).
  mode: Literal['backprop', 'dyna', 'mpc'] = 'dyna'
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
  # units, which depend on the representation, so no one value fits every
  # config.
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
  actor: OptimizerConfig = _optimizer(1e-4)
  critic: OptimizerConfig = _optimizer(3e-4)


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
  steps: int = 2_000  # env steps of the warmup ('simple', 'gradual')
  real_ratio: float = 1.0  # 'gradual': the critic's real ratio m at step 0
  phases: Tuple[WarmupPhaseConfig, ...] = ()  # 'phased', end_step ascending


@dataclasses.dataclass
class ReplayConfig:
  # Steps kept (at most run.total_env_steps are allocated: no run stores more).
  capacity: int = 1_000_000
  batch_size: int = 16  # sequences per batch
  sequence_length: int = 32  # steps per sequence
  # Where the replay's ring buffers live: 'memory' (the trainer stops at
  # start if they cannot fit in available memory), or 'disk': a
  # memory-mapped file per key under <logdir>/replay_storage, for
  # capacities beyond RAM (docs/observations.md).
  storage: Literal['memory', 'disk'] = 'memory'


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
  actor_critic: ActorCriticConfig = dataclasses.field(
      default_factory=ActorCriticConfig)
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


def yaml_name(field_name: str) -> str:
  return _YAML_NAMES.get(field_name, field_name)



def lookup(config: Any, path: str) -> Any:
  """The value at a dotted YAML path, e.g. lookup(c, 'returns.lambda')."""
  node = config
  for key in path.split('.'):
    node = getattr(node, _FIELD_NAMES.get(key, key))
  return node


# dynamics keys that choose what kind of model predicts the next state (not
# its size: base configs size every section alike, and keep the sizes for
