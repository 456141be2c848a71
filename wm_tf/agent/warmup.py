"""Warmup schedules: what each train step updates early in training.

Registry `WARMUPS`, config `warmup.type`. The trainer asks the schedule to
run one train step:

    metrics = schedule.update(learner, next_batch, next_seed, env_step)

where `next_batch()` samples a replay batch and `next_seed()` a stateless
seed; a schedule may call the learner's compiled updates several times.

  * 'simple': before `steps` env steps, `learner.train_world_model`; then
    `learner.train` (world model, actor and critic).
  * 'gradual': always `learner.train`, with the critic's real ratio
        m(env_step) = real_ratio * max(0, 1 - env_step / steps)
    (a line from real_ratio at step 0 to 0 at `steps`) set in
    `ActorCritic.warmup_real_ratio` before each update: the critic regresses on
    real-sequence returns with weight m and on imagined ones with 1 - m.
  * 'phased': a list of phases (end_step, world_model_updates,
    actor_updates, critic_updates). While env_step < end_step of the first
    phase not yet ended, one train step makes that many updates of each
    part; after the last phase, one of each. An update of n parts
    (wm, actor, critic) = (2, 1, 0) runs as max(n) calls,
    call i updating the parts with i < n_part: (wm, actor), then (wm).
    Each call samples its own batch.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, List, Sequence, Tuple

import tensorflow as tf

from wm_tf.agent.learner import Updates
from wm_tf.registry import Registry

WARMUPS = Registry('warmup')



@dataclasses.dataclass(frozen=True)
class Phase:
  end_step: int
  world_model_updates: int = 1
  actor_updates: int = 0
  critic_updates: int = 0


class WarmupSchedule:
  """Base. `real_terms`: the learner must compute the real terms.

  Every schedule takes the same plain arguments and ignores those it does
  not use, so the builder can construct any of them from the registry.
  """

  real_terms = False

  def __init__(self, steps: int = 0, real_ratio: float = 1.0,
               phases: Sequence[Phase] = ()):
    self.steps = steps
    self.real_ratio = real_ratio
    self.phases = tuple(phases)

  def update(self, learner, next_batch: Callable[[], Dict[str, tf.Tensor]],
             next_seed: Callable[[], tf.Tensor], env_step: int
             ) -> Dict[str, tf.Tensor]:
    raise NotImplementedError


@WARMUPS.register('simple')
class SimpleWarmup(WarmupSchedule):
  """World model only until `steps` env steps, then everything."""

  def update(self, learner, next_batch, next_seed, env_step):
    if env_step < self.steps:
      return learner.train_world_model(next_batch())
    return learner.train(next_batch(), next_seed())


@WARMUPS.register('gradual')
class GradualWarmup(WarmupSchedule):
  """Everything trains; the critic's real ratio falls linearly."""

  real_terms = True

  def critic_real_ratio(self, env_step: int) -> float:
    """m(env_step): real_ratio at 0, 0 from `steps` on."""
    return self.real_ratio * max(0.0, 1.0 - env_step / self.steps)

  def update(self, learner, next_batch, next_seed, env_step):
    ratio = self.critic_real_ratio(env_step)
    learner.actor_critic.warmup_real_ratio.assign(ratio)
    metrics = dict(learner.train(next_batch(), next_seed()))
    metrics['warmup/real_ratio'] = tf.constant(ratio)
    return metrics


@WARMUPS.register('phased')
class PhasedWarmup(WarmupSchedule):
  """Per-phase update counts of world model, actor and critic."""

  def counts(self, env_step: int) -> Tuple[int, int, int]:
    """(world-model, actor, critic) updates of one train step."""
    for phase in self.phases:
      if env_step < phase.end_step:
        return (phase.world_model_updates, phase.actor_updates,
                phase.critic_updates)
    return (1, 1, 1)

  def calls(self, env_step: int) -> List[Updates]:
    """The learner calls of one train step."""
    counts = self.counts(env_step)
    return [Updates(*(i < c for c in counts)) for i in range(max(counts))]

  def update(self, learner, next_batch, next_seed, env_step):
    metrics = {}
    for updates in self.calls(env_step):
      metrics.update(learner.update_function(updates)(next_batch(),
                                                       next_seed()))
    return metrics
