"""Imagined rollouts: the actor acting inside the learned dynamics."""

from __future__ import annotations

from typing import Dict

import tensorflow as tf
import tensorflow_probability as tfp


def imagine(dynamics, actor, start: tf.Tensor, horizon: int, seed: tf.Tensor,
            sample_dynamics: bool = True) -> Dict[str, tf.Tensor]:
  """Rolls the actor forward `horizon` steps from latent states.

  The loop is unrolled (horizon is static), which XLA compiles into one
  program. The actor sees stop_gradient(state): its gradient reaches it only
  through the actions it takes and what the dynamics make of them.

  Args:
    dynamics: (state [N, D], action [N, A]) -> distribution over [N, D].
    actor: state [N, D] -> action distribution over [N, A].
    start: real latent states [N, D].
    horizon: H, imagined steps.
    seed: int32 [2] stateless seed.
    sample_dynamics: sample the next state (reparameterised) or use its mean.

  Returns:
    'states' [N, H+1, D] (s_0 = start), 'actions' [N, H, A] (a_t taken in
    s_t), 'log_probs' [N, H] (of the stop-gradient actions) and
    'entropies' [N, H].
  """
  seeds = tfp.random.split_seed(seed, n=2 * horizon)
  state = start
  states, actions, log_probs, entropies = [start], [], [], []
  for t in range(horizon):
    policy = actor(tf.stop_gradient(state))
    action = policy.sample(seed=seeds[2 * t])
    log_probs.append(policy.log_prob(tf.stop_gradient(action)))
    entropies.append(policy.entropy())
    actions.append(action)
    next_state = dynamics(state, action)
    state = (next_state.sample(seed=seeds[2 * t + 1]) if sample_dynamics
             else next_state.mean())
    states.append(state)
  return {
      'states': tf.stack(states, 1),
      'actions': tf.stack(actions, 1),
      'log_probs': tf.stack(log_probs, 1),
      'entropies': tf.stack(entropies, 1),
  }
