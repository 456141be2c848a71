"""What a trained agent's world model imagines, next to the lab env's truth.

Each probe takes the agent's world model (and actor), a lab environment
(`wm_tf.lab.lab_env.LabEnv`, unwrapped) and a NumPy generator, and returns
plain floats from `wm_tf.lab.measures`. Observations are compared in
observation space: a next latent state drawn from the dynamics is decoded
by the decoder's mean. Stateless representations only (the latent of an
observation is `WorldModel.encode` of it).
"""

from __future__ import annotations

from typing import Dict, Optional

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from wm_tf.lab import measures
from wm_tf.lab.lab_env import LabEnv


# The lab environments have one flat Box observation, which wm_tf names so.
OBSERVATION_KEY = 'observation'


def _encode(world_model, observations: np.ndarray) -> tf.Tensor:
  """Latent states [N, D] of observations [N, O]."""
  return world_model.encode(
      {OBSERVATION_KEY: tf.constant(observations, tf.float32)})


def agent_actions(env: LabEnv, actions) -> np.ndarray:
  """Env actions [N] or [N, A] -> the agent's [N, A] (one-hot if discrete)."""
  n = getattr(env.action_space, 'n', None)
  actions = np.asarray(actions)
  if n is not None:
    return np.eye(n, dtype=np.float32)[actions.astype(int)]
  return actions.astype(np.float32)


def env_actions(env: LabEnv, actions: np.ndarray) -> np.ndarray:
  """The agent's actions [N, A] -> what env.step takes, per row."""
  if hasattr(env.action_space, 'n'):
    return np.argmax(actions, -1)
  return np.clip(actions, env.action_space.low, env.action_space.high)


def imagined_next(world_model, states: np.ndarray, actions: np.ndarray,
                  samples: int, seed: int) -> np.ndarray:
  """Decoded next observations [samples, N, O] the model imagines.

  Args:
    states: observations [N, O]; actions: the agent's actions [N, A].
  """
  latent = _encode(world_model, states)
  law = world_model.dynamics(latent, tf.constant(actions, tf.float32))
  nexts = law.sample(samples, seed=tf.constant([seed, 0], tf.int32))
  return np.asarray(world_model.decoder(nexts)[OBSERVATION_KEY].mean())


def next_state_measures(world_model, env: LabEnv, states: np.ndarray,
                        actions, rng: np.random.Generator,
                        samples: int = 200, bandwidth: float = 0.1,
                        coordinate=None) -> Dict[str, float]:
  """The imagined next-observation law against the true one, per state.

  For each probe state (with its env action), `samples` true next
  observations (`env.sample_next`) and as many imagined ones: their energy
  distance, the NLL of the true ones under a KDE of the imagined ones
  (`bandwidth`), and the 1-Wasserstein distance of `coordinate(obs)`
  ([K, O] -> [K], e.g. the die face), each averaged over the states; also
  the same energy distance for a second true sample (the floor the sample
  size allows).
  """
  imagined = imagined_next(world_model, states, agent_actions(env, actions),
                           samples, int(rng.integers(2 ** 31)))
  coordinate = coordinate or (lambda obs: obs[:, 0])
  rows = {'energy': [], 'energy_floor': [], 'nll': [], 'wasserstein': []}
  for i, (state, action) in enumerate(zip(states, actions)):
    true = env.sample_next(state, action, samples, rng)
    again = env.sample_next(state, action, samples, rng)
    rows['energy'].append(measures.energy_distance(imagined[:, i], true))
    rows['energy_floor'].append(measures.energy_distance(again, true))
    rows['nll'].append(measures.kde_nll(true, imagined[:, i], bandwidth))
    rows['wasserstein'].append(measures.wasserstein_1d(
        coordinate(imagined[:, i]), coordinate(true)))
  return {key: float(np.mean(value)) for key, value in rows.items()}


def random_actions(env: LabEnv, n: int, rng: np.random.Generator
                   ) -> np.ndarray:
  """n env actions drawn uniformly from `rng`: [n] or [n, A]."""
  space = env.action_space
  if hasattr(space, 'n'):
    return rng.integers(0, space.n, size=n)
  return rng.uniform(space.low, space.high,
                     size=(n,) + space.shape).astype(np.float32)


def _discounted(rewards: np.ndarray, continues: np.ndarray,
                gamma: float) -> np.ndarray:
  """Discounted H-step returns [N] of rewards and continues [N, H].

  Entry t holds r_{t+1} and c_{t+1} (arriving at s_{t+1}); r_{t+1} counts
  with weight gamma^t c_1 ... c_t (the episode went on up to s_t).
  """
  alive = np.cumprod(np.concatenate(
      [np.ones_like(continues[:, :1]), continues[:, :-1]], 1), 1)
  return (rewards * alive * gamma ** np.arange(rewards.shape[1])).sum(1)


def imagined_returns(world_model, actor, states: np.ndarray, horizon: int,
                     gamma: float, rollouts: int, sample_dynamics: bool,
                     seed: int) -> np.ndarray:
  """[N] mean over `rollouts` of the discounted imagined H-step return."""
  n = len(states)
  latent = _encode(world_model, np.repeat(states, rollouts, 0))
  rewards, continues = [], []
  seeds = tfp.random.split_seed(tf.constant([seed, 1], tf.int32),
                                n=2 * horizon)
  for t in range(horizon):
    action = actor(latent).sample(seed=seeds[2 * t])
    law = world_model.dynamics(latent, action)
    latent = (law.sample(seed=seeds[2 * t + 1]) if sample_dynamics
              else law.mean())
    rewards.append(np.asarray(world_model.reward(latent).mean()))
    continues.append(np.asarray(world_model.continue_probability(latent)))
  returns = _discounted(np.stack(rewards, 1), np.stack(continues, 1), gamma)
  return returns.reshape(n, rollouts).mean(1)


def true_returns(world_model, actor, env_factory, states: np.ndarray,
                 horizon: int, gamma: float, rollouts: int,
                 rng: np.random.Generator) -> np.ndarray:
  """[N] Monte Carlo estimate of the true H-step return of the actor.

  The actor acts on the encoded real observations (sampled actions, as in
  imagination); each rollout runs in its own env put in the start state
  and ends at a termination.
  """
  starts = np.repeat(states, rollouts, 0)
  envs = [env_factory() for _ in starts]
  obs = np.stack([e.set_state(s) for e, s in zip(envs, starts)])
  rewards = np.zeros((len(envs), horizon))
  alive = np.ones(len(envs))
  for t in range(horizon):
    latent = _encode(world_model, obs)
    seed = tf.constant([int(rng.integers(2 ** 31)), t], tf.int32)
    actions = env_actions(envs[0], np.asarray(actor(latent).sample(seed=seed)))
    for i, (e, a) in enumerate(zip(envs, actions)):
      law = e.true_next_distribution(obs[i], a)
      k = rng.choice(len(law.probabilities), p=law.probabilities)
      obs[i] = law.observations[k]
      rewards[i, t] = law.rewards[k] * alive[i]
      alive[i] *= 0.0 if law.terminated[k] else 1.0
  discounts = gamma ** np.arange(horizon)
  return (rewards * discounts).sum(1).reshape(len(states), rollouts).mean(1)


def return_measures(world_model, actor, env_factory, states, horizon: int,
                    gamma: float, sample_dynamics: bool,
                    rng: np.random.Generator, rollouts: int = 16
                    ) -> Dict[str, float]:
  """Imagined against true expected H-step returns from probe states."""
  imagined = imagined_returns(world_model, actor, states, horizon, gamma,
                              rollouts, sample_dynamics,
                              int(rng.integers(2 ** 31)))
  true = true_returns(world_model, actor, env_factory, states, horizon,
                      gamma, rollouts, rng)
  return {'return_error': measures.mean_absolute_error(imagined, true),
          'imagined_return': float(imagined.mean()),
          'true_return': float(true.mean())}


def value_measures(world_model, critic, actor, env_factory, states,
                   horizon: int, gamma: float, rng: np.random.Generator,
                   rollouts: int = 16) -> Dict[str, float]:
  """The critic's values against the actor's true discounted returns.

  value_error is the mean |V(s) - G(s)| over the probe states, G the Monte
  Carlo return of the actor in the real env over `horizon` steps (the
  episode limit): how good the targets the critic was trained on were.
  """
  latent = _encode(world_model, states)
  values = np.asarray(critic(latent).mean())
  true = true_returns(world_model, actor, env_factory, states, horizon,
                      gamma, rollouts, rng)
  return {'value_error': measures.mean_absolute_error(values, true),
          'value': float(values.mean()), 'true_value': float(true.mean())}


def uncertainty_score(world_model, states: np.ndarray, actions: np.ndarray
                      ) -> np.ndarray:
  """[N] the dynamics' uncertainty at (s, a): the ensemble's disagreement
  where it has one, else the predicted std, averaged over latent dims."""
  latent = _encode(world_model, states)
  law = world_model.dynamics(latent, tf.constant(actions, tf.float32))
  spread = (law.disagreement() if hasattr(law, 'disagreement')
            else law.stddev())
  return np.asarray(tf.reduce_mean(spread, -1))


def ood_auroc(world_model, env, rng: np.random.Generator, n: int = 256,
              score=uncertainty_score) -> Optional[float]:
  """AUROC of `score` separating env.held_out_states from covered_states."""
  if not hasattr(env, 'held_out_states'):
    return None
  held_out, covered = env.held_out_states(n, rng), env.covered_states(n, rng)
  actions = agent_actions(env, random_actions(env, n, rng))
  return measures.auroc(score(world_model, held_out, actions),
                        score(world_model, covered, actions))
