"""Stepping vector environments and turning their output into step records.

Gymnasium's NEXT_STEP autoreset: after an episode ends in environment i,
the next `step` ignores i's action and returns the reset observation. The
collector records that step as is_first with reward 0, so no transition in
the replay crosses an episode boundary (see `wm_tf.runtime.replay`).

`PolicyActing` carries the acting policy's state (`wm_tf.agent.policy`)
for the N environments from one step to the next; is_first resets a row.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf

from wm_tf.runtime.environments import EnvSpec, to_env_actions
from wm_tf.runtime.observation_spaces import ObservationConverter


class Collector:
  """Keeps the current step of every environment and advances them together.

  `step(choose_actions)` records the current steps with the chosen actions
  and advances the environments; it returns the records [N, ...] to store.
  Finished episodes' returns and lengths accumulate in `finished`.
  `observation` is the current observation dict {key: [N, *shape]}.
  """

  def __init__(self, envs, spec: EnvSpec, seed: int):
    self.envs = envs
    self.spec = spec
    self.num_envs = envs.num_envs
    self.convert = ObservationConverter(envs.single_observation_space,
                                        spec.id)
    obs, _ = envs.reset(seed=seed)
    n = self.num_envs
    self.observation = self.convert(obs, (n,))
    self.reward = np.zeros(n, np.float32)
    self.is_first = np.ones(n, bool)
    self.is_terminal = np.zeros(n, bool)
    self.is_last = np.zeros(n, bool)
    self._episode_return = np.zeros(n, np.float64)
    self._episode_length = np.zeros(n, np.int64)
    self.finished: List[Dict[str, float]] = []

  def step(self, choose_actions: Callable[[np.ndarray], np.ndarray]
           ) -> Dict[str, np.ndarray]:
    """Records the current steps and advances every environment once.

    Args:
      choose_actions: observations {key: [N, *shape]} -> agent actions
        [N, A]. Where
        `self.is_first` [N] is set, the observation starts an episode (a
        stateful policy resets there; see `PolicyActing`).

    Returns:
      The step records of the current steps, each [N, ...].
    """
    action = np.asarray(choose_actions(self.observation), np.float32)
    action = np.where(self.is_last[:, None], 0.0, action).astype(np.float32)
    record = {
        **self.observation,
        'action': action,
        'reward': self.reward,
        'is_first': self.is_first,
        'is_terminal': self.is_terminal,
        'is_last': self.is_last,
    }
    was_last = self.is_last
    obs, reward, terminated, truncated, _ = self.envs.step(
        to_env_actions(action, self.spec))
    self.observation = self.convert(obs, (self.num_envs,))
    # Environments that had finished were reset by this step.
    self.is_first = was_last.copy()
    self.reward = np.where(was_last, 0.0, reward).astype(np.float32)
    self.is_terminal = np.logical_and(terminated, ~was_last)
    self.is_last = np.logical_and(np.logical_or(terminated, truncated),
                                  ~was_last)
    self._episode_return = np.where(was_last, 0.0,
                                    self._episode_return + self.reward)
    self._episode_length = np.where(was_last, 0, self._episode_length + 1)
    for i in np.flatnonzero(self.is_last):
      self.finished.append({'return': float(self._episode_return[i]),
                            'length': int(self._episode_length[i])})
    return record

  def pop_finished(self) -> List[Dict[str, float]]:
    done, self.finished = self.finished, []
    return done


class PolicyActing:
  """A `Policy` acting in N environments, with its state carried per row.

  Each call advances the state by one step; pass the is_first flags of the
  observations (the collector's `is_first`, true at every reset
  observation) so each environment's state restarts with its episode.

  Args:
    policy: a `wm_tf.agent.policy.Policy`.
    num_envs: N.
  """

  def __init__(self, policy, num_envs: int):
    self.policy = policy
    self.state = policy.initial_state(num_envs)

  def act(self, observation: Dict[str, np.ndarray], is_first: np.ndarray,
          seed: tf.Tensor) -> Tuple[np.ndarray, Dict[str, tf.Tensor]]:
    """Sampled (or planned) agent actions [N, A] and the policy's stats."""
    action, self.state, stats = self.policy.act(
        observation, np.asarray(is_first, bool), self.state, seed)
    return action.numpy(), stats

  def act_deterministic(self, observation: Dict[str, np.ndarray],
                        is_first: np.ndarray) -> np.ndarray:
    """The deterministic agent actions [N, A]."""
    action, self.state, _ = self.policy.act_deterministic(
        observation, np.asarray(is_first, bool), self.state)
    return action.numpy()


def random_actions(rng: np.random.Generator, spec: EnvSpec, n: int
                   ) -> np.ndarray:
  """Uniform random agent actions [n, A]: one-hot or inside the bounds."""
  if spec.discrete:
    return np.eye(spec.action_dim, dtype=np.float32)[
        rng.integers(0, spec.action_dim, n)]
  return rng.uniform(spec.low, spec.high,
                     (n, spec.action_dim)).astype(np.float32)


def evaluate_policy(envs, spec: EnvSpec,
                    act: Callable[[Dict[str, np.ndarray], np.ndarray],
                                  np.ndarray],
                    seed: int,
                    frames: Optional[Dict[str, list]] = None) -> np.ndarray:
  """Runs one episode in each of the N environments, in parallel.

  Args:
    envs: a vector env of N copies (N = episodes wanted).
    act: (observations {key: [N, *shape]}, is_first [N]) -> agent
      actions [N, A] (a
      deterministic policy, e.g. `PolicyActing.act_deterministic`);
      is_first is true at the first step only.
    frames: {image key: []}: each list receives the first environment's
      observations of that key, [H, W, C] uint8, one per step of its
      episode (its last observation included).

  Returns:
    The N episode returns, float64 [N].
  """
  convert = ObservationConverter(envs.single_observation_space, spec.id)
  obs, _ = envs.reset(seed=seed)
  n = envs.num_envs
  returns = np.zeros(n)
  running = np.ones(n, bool)
  is_first = np.ones(n, bool)
  while running.any():
    observation = convert(obs, (n,))
    if frames is not None and running[0]:
      for key, sink in frames.items():
        sink.append(np.asarray(observation[key][0]))
    action = to_env_actions(np.asarray(act(observation, is_first)), spec)
    is_first = np.zeros(n, bool)
    obs, reward, terminated, truncated, _ = envs.step(action)
    returns += np.where(running, reward, 0.0)
    if frames is not None and running[0] and (terminated[0] or truncated[0]):
      # The vector env returns the final observation of a finished episode
      # (NEXT_STEP autoreset), so it goes in too.
      final = convert(obs, (n,))
      for key, sink in frames.items():
        sink.append(np.asarray(final[key][0]))
    running &= ~np.logical_or(terminated, truncated)
  return returns
