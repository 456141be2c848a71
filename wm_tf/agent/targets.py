"""Target world models: which world model the actor imagines in.

Registry `WORLD_MODEL_TARGETS`, config `world_model.target`:

  * 'none': the online world model itself.
  * 'copy': a frozen copy, refreshed to the online weights after every
    `every`-th world-model update (the 1st refresh after update `every`).
  * 'ema': after every world-model update,
        target <- (1 - tau) * target + tau * online,
    so after k updates of a fixed online model
        target_k = online + (1 - tau)^k * (target_0 - online).

The target's dynamics, reward and continue heads drive imagination: the
actor's and critic's targets then move slowly even while the world model
trains fast. No optimizer holds the target's variables.
"""

from __future__ import annotations

import tensorflow as tf

from wm_tf import replicas
from wm_tf.registry import Registry

WORLD_MODEL_TARGETS = Registry('world_model.target')


def ema_update(targets, sources, fraction: float) -> None:
  """target <- (1 - fraction) * target + fraction * source, pair by pair.

  Args:
    targets: variables, each assigned in every replica (`replicas.assign`).
    sources: tensors or variables of the targets' shapes, in their order.
    fraction: weight of the source per update, in (0, 1].
  """
  for src, dst in zip(sources, targets):
    replicas.assign(dst, (1.0 - fraction) * dst + fraction * src)


def _paired_variables(online, target):
  """(online, target) variable pairs, checked to have the same shapes."""
  src, dst = online.variables, target.variables
  if len(src) != len(dst) or any(
      s.shape != d.shape for s, d in zip(src, dst)):
    raise ValueError(
        'The target world model must have the architecture of the online '
        f'one: {len(src)} vs {len(dst)} variables, shapes '
        f'{[s.shape for s in src]} vs {[d.shape for d in dst]}.')
  return list(zip(src, dst))


class WorldModelTarget(tf.Module):
  """A wrapper of the online world model: `model` is what imagination
  reads; `train` trains the online model and then follows it (`update`).

  Args:
    online: the trained `WorldModel`.
    target: a second `WorldModel` of the same architecture (unused by
      'none').
    every: 'copy': world-model updates between refreshes.
    tau: 'ema': fraction of the online weights mixed in per update.
  """

  needs_own_model = True  # the builder must make a second world model

  def __init__(self, online, target=None, every: int = 100,
               tau: float = 0.01, name: str = 'world_model_target'):
    super().__init__(name=name)
    self.online = online
    self.model = online if target is None else target
    self.every = every
    self.tau = tau
    # World-model updates seen (an int64 counter, checkpointed).
    self.updates = tf.Variable(
        0, dtype=tf.int64, trainable=False, name='target_updates',
        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)

  @property
  def is_separate(self) -> bool:
    return self.model is not self.online

  def initialize(self) -> None:
    """Sets the target to the online weights (after both are built)."""
    for src, dst in self._pairs():
      replicas.assign(dst, src)

  def _pairs(self):
    return _paired_variables(self.online, self.model)

  def train(self, batch, seed=None):
    """`online.train(batch, seed)`, then `update()`: (latent, metrics)."""
    latent, metrics = self.online.train(batch, seed)
    self.update()
    return latent, metrics

  def update(self) -> None:
    """Follows one world-model update of the online model."""
    self.updates.assign_add(1)


@WORLD_MODEL_TARGETS.register('none')
class NoTarget(WorldModelTarget):
  """Imagination uses the online world model."""

  needs_own_model = False

  def __init__(self, online, target=None, every: int = 100,
               tau: float = 0.01, name: str = 'world_model_target'):
    del target
    super().__init__(online, None, every, tau, name=name)

  def initialize(self) -> None:
    pass


@WORLD_MODEL_TARGETS.register('copy')
class CopyTarget(WorldModelTarget):
  """A frozen copy refreshed after every `every`-th world-model update."""

  def update(self) -> None:
    super().update()
    refresh = tf.equal(self.updates % self.every, 0)
    for src, dst in self._pairs():
      replicas.assign(dst, tf.where(refresh, src, dst))


@WORLD_MODEL_TARGETS.register('ema')
class EMATarget(WorldModelTarget):
  """target <- (1 - tau) * target + tau * online after every update."""

  def update(self) -> None:
    super().update()
    pairs = self._pairs()
    ema_update([dst for _, dst in pairs], [src for src, _ in pairs],
               self.tau)
