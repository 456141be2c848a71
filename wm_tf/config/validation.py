"""Validation: every range and consistency rule of the config, each once.

A rule's error is one line naming the key(s), the value and what is
allowed. Components check nothing that is checked here: the builder only
passes them validated values.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Dict, Tuple

from wm_tf.config.schema import (ActorCriticLossScalesConfig, Config,
                                 ConfigError, DynamicsConfig,
                                 LossScalesConfig, RepresentationConfig,
                                 lookup, yaml_name)
from wm_tf.specs import Observations


# Bounds checked after types: (path, predicate, what is allowed).
_RANGES = (
    ('env.num_envs', lambda v: v >= 1, 'an integer >= 1'),
    ('env.max_episode_steps', lambda v: v is None or v >= 1,
     'an integer >= 1 (or null: the registered limit)'),
    ('env.size', lambda v: len(v) == 2 and min(v) >= 1,
     'a list [height, width] of two integers >= 1'),
    ('env.action_repeat', lambda v: v is None or v >= 1,
     'an integer >= 1 (or null: by family)'),
    ('env.atari.pool_frames', lambda v: v >= 1, 'an integer >= 1'),
    ('env.atari.sticky_actions', lambda v: 0 <= v <= 1, 'a number in [0, 1]'),
    ('env.atari.noop_max', lambda v: v >= 0, 'an integer >= 0'),
    ('env.atari.max_frames', lambda v: v >= 1, 'an integer >= 1'),
    ('env.dmc.camera', lambda v: v is None or v >= 0,
     'an integer >= 0 (or null: by domain)'),
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
    ('representation_learner.classes', lambda v: v >= 2, 'an integer >= 2'),
    ('representation_learner.unimix', lambda v: 0 <= v < 1,
     'a number in [0, 1)'),
    ('representation_learner.dyn_scale', lambda v: v >= 0, 'a number >= 0'),
    ('representation_learner.rep_scale', lambda v: v >= 0, 'a number >= 0'),
    ('world_model.terminal_weight', lambda v: v > 0 and math.isfinite(v),
     'a finite number > 0'),
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
    ('encoder.cnn_depth', lambda v: v >= 1, 'an integer >= 1'),
    ('encoder.cnn_kernel', lambda v: v >= 1, 'an integer >= 1'),
    ('encoder.cnn_min_resolution', lambda v: v >= 1, 'an integer >= 1'),
    ('replay.capacity', lambda v: v >= 1, 'an integer >= 1'),
    ('replay.batch_size', lambda v: v >= 1, 'an integer >= 1'),
    ('replay.sequence_length', lambda v: v >= 2, 'an integer >= 2'),
) + tuple(
    (f'{learner}.loss_scales.{term}', lambda v: math.isfinite(v) and v >= 0,
     'a finite number >= 0')
    for learner, scales in (('world_model', LossScalesConfig),
                            ('actor_critic', ActorCriticLossScalesConfig))
    for term in (yaml_name(f.name) for f in dataclasses.fields(scales))
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



def check_ranges(config: Config) -> None:
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
  if (config.actor_critic.loss_scales.critic_slow > 0
      and config.critic.slow_target_fraction == 0):
    raise ConfigError(
        'Config keys actor_critic.loss_scales.critic_slow='
        f'{config.actor_critic.loss_scales.critic_slow} and '
        'critic.slow_target_fraction=0 conflict: without a moving slow '
        'critic there is nothing to regularise towards; allowed: '
        'slow_target_fraction > 0, or critic_slow 0.')
  _check_agent_options(config)
  for path in _KEY_PATTERNS:
    _key_pattern(config, path)


def _check_agent_options(config: Config) -> None:
  """Refuses combinations of the agent's alternatives that make no sense."""
  _check_warmup(config)
  _check_optimizers_and_planner(config)
  _check_acting(config)


def _check_warmup(config: Config) -> None:
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


def _check_optimizers_and_planner(config: Config) -> None:
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


def _check_acting(config: Config) -> None:
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


# The KL weights of each RSSM latent; a key of the other latent is refused.
_RSSM_KL_KEYS = {'gaussian': ('beta', 'kl_balance'),
                 'categorical': ('dyn_scale', 'rep_scale')}


def _check_rssm_latent(rep, given: dict) -> None:
  """Refuses a categorical latent outside the RSSM, and KL weights of the
  other latent set away from their defaults (`given`: the
  representation_learner keys the user set)."""
  if rep.latent != 'gaussian' and rep.type != 'rssm':
    raise ConfigError(
        f"Config keys representation_learner.latent={rep.latent!r} and "
        f"representation_learner.type={rep.type!r} conflict: only 'rssm' "
        "has a choice of latent. Use type 'rssm' or latent 'gaussian'.")
  if rep.type != 'rssm':
    return
  # A key at its default passes: a run's saved config.yaml holds them all.
  default = RepresentationConfig()
  own = _RSSM_KL_KEYS[rep.latent]
  other = [k for keys in _RSSM_KL_KEYS.values() for k in keys
           if k not in own and given.get(k) is not None
           and given[k] != getattr(default, k)]
  if other:
    raise ConfigError(
        f"Config keys representation_learner.latent={rep.latent!r} and "
        + ', '.join(f'representation_learner.{k}={given[k]!r}' for k in other)
        + f' conflict: the {rep.latent} latent weighs its KL by '
        + ' and '.join(own) + '; allowed: those keys, not ' + ', '.join(other)
        + '.')


def check_world_model_options(config: Config, data: dict) -> None:
  """Refuses representation and dynamics combinations that make no sense.

  `data` is the raw mapping, to tell keys the user gave from defaults.
  """
  rep, dyn = config.representation_learner, config.dynamics
  if rep.type == 'rssm':
    _check_unused_dynamics(dyn, data.get('dynamics') or {})
  _check_rssm_latent(rep, data.get('representation_learner') or {})
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


# representation_learner.beta when the config leaves it unset, by type
# (the other types have no KL term: theirs is null).
REPRESENTATION_BETA = {'vae': 0.01, 'rssm': 1.0}


def fill_defaults_by_type(config: Config) -> None:
  """Sets the keys whose default depends on a `type`, if left unset.

  A type without a KL term gets beta null whatever the file says, so that
  the config.yaml of a run saved when beta defaulted to 1.0 for every type
  still matches its config on resume.
  """
  rep = config.representation_learner
  if rep.type not in REPRESENTATION_BETA or (
      rep.type == 'rssm' and rep.latent != 'gaussian'):
    rep.beta = None
  elif rep.beta is None:
    rep.beta = REPRESENTATION_BETA[rep.type]



# The regexes that route observation keys (EncoderConfig, DecoderConfig).
_KEY_PATTERNS = ('encoder.mlp_keys', 'encoder.cnn_keys',
                 'heads.decoder.mlp_keys', 'heads.decoder.cnn_keys')


def _key_pattern(config: Config, path: str) -> 're.Pattern':
  """The compiled regex at `path`; a decoder's null is the encoder's."""
  text = lookup(config, path)
  if text is None:
    path = path.replace('heads.decoder', 'encoder')
    text = lookup(config, path)
  try:
    return re.compile(text)
  except re.error as e:
    raise ConfigError(f'Config key {path!r} has value {text!r}, which is not '
                      f'a regular expression ({e}); allowed: a Python regex '
                      "matched against whole observation keys, e.g. '.*' or "
                      "'image|depth'.") from None


Routing = Dict[str, Tuple[Tuple[str, ...], Tuple[str, ...]]]


def route_observation_keys(config: Config,
                           observations: Observations) -> Routing:
  """{'encoder' / 'decoder': (vector keys, image keys)}, in space order.

  A vector key goes to the MLP branch if its name matches mlp_keys in
  full, an image key to the CNN branch if it matches cnn_keys.

  Raises:
    ConfigError: a section's regexes select no key, naming the keys.
  """
  available = ', '.join(f'{o.key} ({"image" if o.is_image else "vector"} '
                        f'{list(o.shape)})' for o in observations)
  routing = {}
  for section, prefix in (('encoder', 'encoder'),
                          ('decoder', 'heads.decoder')):
    mlp = _key_pattern(config, f'{prefix}.mlp_keys')
    cnn = _key_pattern(config, f'{prefix}.cnn_keys')
    vectors = tuple(o.key for o in observations
                    if not o.is_image and mlp.fullmatch(o.key))
    images = tuple(o.key for o in observations
                   if o.is_image and cnn.fullmatch(o.key))
    if not vectors + images:
      raise ConfigError(
          f'Config keys {prefix}.mlp_keys={mlp.pattern!r} and '
          f'{prefix}.cnn_keys={cnn.pattern!r} select no observation key; '
          f'the environment has: {available}.')
    routing[section] = (vectors, images)
  for o in observations:
    if o.key in routing['encoder'][1] + routing['decoder'][1]:
      _check_image_size(o, config.encoder.cnn_min_resolution)
  return routing


def _check_image_size(image, resolution: int) -> None:
  """The CNNs halve an image's sides down to `resolution`: its shorter
  side must be resolution * 2^S (S >= 1) and its longer one divide by 2^S."""
  height, width = image.shape[:2]
  stages = 0
  while resolution * 2 ** stages < min(height, width):
    stages += 1
  if (stages < 1 or resolution * 2 ** stages != min(height, width)
      or max(height, width) % 2 ** stages):
    raise ConfigError(
        f'Observation key {image.key!r} has images of {height}x{width}, '
        f'which encoder.cnn_min_resolution={resolution} does not take; '
        f'allowed: a shorter side of {resolution} times a power of two '
        f'({", ".join(str(resolution * 2 ** i) for i in (1, 2, 3, 4))}, ...) '
        'and a longer one divisible by the same power, e.g. 64x64 with 4.')
