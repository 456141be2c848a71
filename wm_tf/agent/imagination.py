"""Imagined rollouts and the imagination modes of the actor-critic learner."""

from __future__ import annotations

from typing import Dict

import tensorflow as tf
import tensorflow_probability as tfp

from wm_tf.registry import Registry


def imagine(dynamics, actor, start: tf.Tensor, horizon: int, seed: tf.Tensor,
            sample_dynamics: bool = True, unroll: bool = True
            ) -> Dict[str, tf.Tensor]:
  """Rolls the actor forward `horizon` steps from latent states.

  The actor sees stop_gradient(state): its gradient reaches it only
  through the actions it takes and what the dynamics make of them. Both
  forms below draw the same random numbers and compute the same function.

  Args:
    dynamics: (state [N, D], action [N, A]) -> distribution over [N, D].
    actor: state [N, D] -> action distribution over [N, A].
    start: real latent states [N, D].
    horizon: H, imagined steps.
    seed: int32 [2] stateless seed.
    sample_dynamics: sample the next state (reparameterised) or use its mean.
    unroll: write the H steps out one after another (XLA schedules across
      steps, at the price of an H times larger program to compile), or
      compile one step as the body of a `tf.while_loop` run H times.

  Returns:
    'states' [N, H+1, D] (s_0 = start), 'actions' [N, H, A] (a_t taken in
    s_t), 'log_probs' [N, H] (of the stop-gradient actions) and
    'entropies' [N, H].
  """
  seeds = tfp.random.split_seed(seed, n=2 * horizon)

  def step(state, action_seed, state_seed):
    policy = actor(tf.stop_gradient(state))
    action = policy.sample(seed=action_seed)
    next_state = dynamics(state, action)
    next_state = (next_state.sample(seed=state_seed) if sample_dynamics
                  else next_state.mean())
    return (next_state, action, policy.log_prob(tf.stop_gradient(action)),
            policy.entropy())

  if unroll:
    state = start
    states, actions, log_probs, entropies = [start], [], [], []
    for t in range(horizon):
      state, action, log_prob, entropy = step(state, seeds[2 * t],
                                              seeds[2 * t + 1])
      states.append(state)
      actions.append(action)
      log_probs.append(log_prob)
      entropies.append(entropy)
    return {
        'states': tf.stack(states, 1),
        'actions': tf.stack(actions, 1),
        'log_probs': tf.stack(log_probs, 1),
        'entropies': tf.stack(entropies, 1),
    }
  return _imagine_in_loop(step, start, horizon, tf.stack(seeds))


def _imagine_in_loop(step, start: tf.Tensor, horizon: int,
                     seeds: tf.Tensor) -> Dict[str, tf.Tensor]:
  """`imagine` as a tf.while_loop over `step`; seeds [2H, 2]."""
  # The shapes of one step's outputs, for the loop's TensorArrays; these
  # ops are traced only for their static shapes (nothing uses them, so
  # graph mode and XLA prune them).
  arrays = [tf.TensorArray(t.dtype, size=horizon, element_shape=t.shape)
            for t in step(start, seeds[0], seeds[1])]

  def body(t, state, arrays):
    outputs = step(state, seeds[2 * t], seeds[2 * t + 1])
    return t + 1, outputs[0], [a.write(t, o) for a, o in zip(arrays, outputs)]

  _, _, arrays = tf.while_loop(
      lambda t, state, arrays: t < horizon, body,
      (tf.constant(0), start, arrays), maximum_iterations=horizon)
  # TensorArray.stack() is [H, N, ...]; the rollout is batch-major.
  next_states, actions, log_probs, entropies = [
      tf.transpose(a.stack(), [1, 0] + list(range(2, a.element_shape.rank + 1)))
      for a in arrays]
  return {
      'states': tf.concat([start[:, None], next_states], 1),
      'actions': actions,
      'log_probs': log_probs,
      'entropies': entropies,
  }


# ---------------------------------------------------------------------------
# Imagination modes (config `imagination.mode`): how imagined and real data
# enter the actor and critic losses, and whether acting plans.
# ---------------------------------------------------------------------------

IMAGINATION_MODES = Registry('imagination.mode')


class ImaginationMode:
  """What data the actor-critic learner trains on, and how acting acts.

  The actor-critic learner (`wm_tf.agent.actor_critic`) always has its
  imagined terms; with `real_terms` it also computes the real ones (the
  critic's regression onto returns of the replayed sequence, an
  advantage-weighted likelihood of the replayed actions for the actor) and
  takes the fraction `real_ratio` of each loss from them.

  Attributes:
    real_ratio: fraction of actor and critic loss from the real terms.
    real_terms: the learner must compute the real terms.
    acts_with_planner: the acting policy plans with MPC instead of sampling
      the actor.
  """

  real_ratio: float = 0.0
  real_actor_advantage: str = 'positive'
  real_terms: bool = False
  acts_with_planner: bool = False

  def __init__(self, real_ratio: float = 0.0,
               real_actor_advantage: str = 'positive'):
    del real_ratio, real_actor_advantage


@IMAGINATION_MODES.register('backprop')
class BackpropMode(ImaginationMode):
  """Actor and critic learn from imagined rollouts only (Dreamer)."""


@IMAGINATION_MODES.register('dyna')
class DynaMode(ImaginationMode):
  """Actor and critic losses mix imagined and real terms.

    critic_loss = (1 - rho) * imagined + rho * real,
    actor_loss  = (1 - rho) * imagined + rho * real,   rho = real_ratio.

  The imagined critic term regresses V on imagined states onto imagined
  returns; the real one regresses V on the batch's real latents (the
  imagination start states) onto returns of the replayed rewards, so with
  rho = 1 the critic learns from real returns alone. The real actor term
  weights the log-probability of each replayed action by its real
  advantage (`real_actor_advantage` 'signed') or by the advantage's
  positive part ('positive'): an off-policy estimate without importance
  weights, biased towards the behaviour policy's data
  (`wm_tf.losses.advantage_weighted_nll`).
  """

  real_terms = True

  def __init__(self, real_ratio: float = 0.5,
               real_actor_advantage: str = 'positive'):
    super().__init__()
    self.real_ratio = float(real_ratio)
    self.real_actor_advantage = real_actor_advantage


@IMAGINATION_MODES.register('mpc')
class MPCMode(ImaginationMode):
  """Acting plans in the world model (`wm_tf.agent.mpc`).

  Actor and critic still learn as in 'backprop': the critic values the
  ends of plans (mpc.terminal_value) and the actor can serve as a fallback
  or for evaluation of the learned policy.
  """

  acts_with_planner = True
