"""Optimizer layouts: which loss updates which variables, with which Adam.

The learner's three parts and their losses:

    part          variables                       loss
    world_model   WorldModel.trainable_variables  world-model NLL
    actor         Actor.trainable_variables       imagined (and real) returns
    critic        critic.trainable_variables      value regression

A layout (registry `OPTIMIZER_LAYOUTS`, config `optimizers.type`) owns the
Adam optimizer(s) and applies the gradients of the losses it is given:

  * 'separate': three optimizers (optimizers.world_model / actor / critic),
    handed to the learners that own the parts: `WorldModel.train` steps the
    world model's, then `ActorCritic.train`, imagining in the updated
    model, steps the actor's and the critic's; each loss is differentiated
    w.r.t. its own part only.
  * 'single': one optimizer (optimizers.world_model's settings) on
    wm_loss + alpha * actor_loss + beta * critic_loss, differentiated w.r.t.
    the variables of all three parts. This deliberately breaks gradient
    separation: the actor loss, computed through the dynamics, reward and
    continue heads, also trains them to predict higher returns (and the
    critic, when there is no slow critic). All losses are computed on the
    same, not yet updated, models.
  * 'masked': one optimizer (optimizers.world_model's settings), one step
    for all parts, but each loss's gradient reaches only its own part's
    variables (the others' gradients are zeroed, i.e. never taken); each
    part's gradient is clipped by its own global norm.

Every layout guards against non-finite numbers: an update whose loss or
gradient norm is NaN or inf is not applied (`tf.cond`, also under XLA),
and `apply` reports whether everything was applied.

Under a tf.distribute strategy `apply` runs once per replica: each
replica's gradients are averaged over the replicas (`wm_tf.replicas.mean`)
before clipping, so the clip, the norm metric and the non-finite decision
are those of the global batch's gradient, the same in every replica.
"""

from __future__ import annotations

import dataclasses
from typing import Dict

import keras
import tensorflow as tf

from wm_tf import replicas
from wm_tf.registry import Registry

PARTS = ('world_model', 'actor', 'critic')

OPTIMIZER_LAYOUTS = Registry('optimizers')


@dataclasses.dataclass
class OptimizerSettings:
  learning_rate: float
  clip_norm: float = 100.0
  epsilon: float = 1e-8


def make_optimizer(settings: OptimizerSettings, name: str):
  return keras.optimizers.Adam(
      learning_rate=settings.learning_rate, epsilon=settings.epsilon,
      name=name)


def _finite(*tensors) -> tf.Tensor:
  return tf.reduce_all([tf.reduce_all(tf.math.is_finite(t)) for t in tensors])


def _gradients(tape, loss, variables):
  grads = tape.gradient(loss, variables)
  return [tf.zeros_like(v) if g is None else g
          for g, v in zip(grads, variables)]


class OptimizerLayout(tf.Module):
  """Base: `optimizers[part]`, `joint`, `build(groups)`, `apply`."""

  optimizers: Dict[str, object]
  # True: every loss is computed on the models before any update and
  # `apply` takes them together. False: each learner steps its own
  # optimizer in turn (`WorldModel.train`, then `ActorCritic.train`).
  joint = True

  def build(self, groups: Dict[str, list]) -> None:
    for optimizer in {id(o): o for o in self.optimizers.values()}.values():
      optimizer.build([v for p in PARTS for v in groups[p]])

  def apply(self, tape, losses: Dict[str, tf.Tensor],
            groups: Dict[str, list], metrics: Dict[str, tf.Tensor]
            ) -> Dict[str, tf.Tensor]:
    """Applies the losses' gradients; returns {part: applied (bool)}.

    Args:
      tape: a persistent GradientTape that recorded every loss.
      losses: {part: scalar loss} for the parts to update now.
      groups: {part: variables} for every part in PARTS.
      metrics: gets '<part>/grad_norm' (or 'optimizer/grad_norm').
    """
    raise NotImplementedError


@OPTIMIZER_LAYOUTS.register('separate')
class SeparateOptimizers(OptimizerLayout):
  """One Adam per part; each loss reaches only its own part."""

  joint = False

  def __init__(self, settings: Dict[str, OptimizerSettings],
               alpha: float = 1.0, beta: float = 1.0, name='separate'):
    super().__init__(name=name)
    del alpha, beta
    self.settings = dict(settings)
    self.optimizers = {p: make_optimizer(settings[p], f'{p}_adam')
                       for p in PARTS}

  def build(self, groups):
    for p in PARTS:
      self.optimizers[p].build(groups[p])

  def apply(self, tape, losses, groups, metrics):
    applied = {}
    for part, loss in losses.items():
      applied[part], metrics[f'{part}/grad_norm'] = replicas.clipped_update(
          self.optimizers[part], tape, loss, groups[part],
          self.settings[part].clip_norm)
    return applied


@OPTIMIZER_LAYOUTS.register('single')
class SingleOptimizer(OptimizerLayout):
  """One Adam on wm + alpha * actor + beta * critic over all variables."""

  def __init__(self, settings: Dict[str, OptimizerSettings],
               alpha: float = 1.0, beta: float = 1.0, name='single'):
    super().__init__(name=name)
    self.settings = settings['world_model']
    self.scales = {'world_model': 1.0, 'actor': alpha, 'critic': beta}
    optimizer = make_optimizer(self.settings, 'single_adam')
    self.optimizers = {p: optimizer for p in PARTS}

  def apply(self, tape, losses, groups, metrics):
    names = list(losses)
    scales = [tf.constant(self.scales[p], tf.float32) for p in names]
    total = tf.add_n([s * losses[p] for s, p in zip(scales, names)])
    seen, variables = set(), []
    for p in PARTS:  # every part, whichever losses are given
      for v in groups[p]:
        if id(v) not in seen:
          seen.add(id(v))
          variables.append(v)
    # d(sum_p scale_p loss_p) in one backward pass (the tape recorded the
    # losses, not their sum).
    grads = tape.gradient([losses[p] for p in names], variables,
                          output_gradients=scales)
    # Variables no loss reaches are left out, so momentum cannot move them.
    pairs = [(g, v) for g, v in zip(grads, variables) if g is not None]
    grads, norm = tf.clip_by_global_norm(
        replicas.mean([g for g, _ in pairs]), self.settings.clip_norm)
    metrics['optimizer/grad_norm'] = norm
    metrics['optimizer/total_loss'] = total
    ok = replicas.apply_if(self.optimizers['world_model'],
                           _finite(replicas.mean(total), norm), grads,
                           [v for _, v in pairs])
    return {p: ok for p in losses}


@OPTIMIZER_LAYOUTS.register('masked')
class MaskedOptimizer(OptimizerLayout):
  """One Adam and one step; each loss reaches only its own part."""

  def __init__(self, settings: Dict[str, OptimizerSettings],
               alpha: float = 1.0, beta: float = 1.0, name='masked'):
    super().__init__(name=name)
    del alpha, beta
    self.settings = settings['world_model']
    optimizer = make_optimizer(self.settings, 'masked_adam')
    self.optimizers = {p: optimizer for p in PARTS}

  def apply(self, tape, losses, groups, metrics):
    all_grads, all_vars, checks = [], [], []
    for part, loss in losses.items():
      grads = replicas.mean(_gradients(tape, loss, groups[part]))
      grads, norm = tf.clip_by_global_norm(grads, self.settings.clip_norm)
      metrics[f'{part}/grad_norm'] = norm
      checks += [replicas.mean(loss), norm]
      all_grads += grads
      all_vars += groups[part]
    ok = replicas.apply_if(self.optimizers['world_model'],
                           _finite(*checks), all_grads, all_vars)
    return {p: ok for p in losses}
