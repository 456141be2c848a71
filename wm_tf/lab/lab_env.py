"""The common form of the lab environments: a known, finite next-state law.

Every lab environment is fully observed (its state is its observation, a
float32 vector) and defines its transition law once, in
`true_next_distribution`; `step` samples from that same law, so what the
measures compare against is what the agent met.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import gymnasium as gym
import numpy as np


class Outcomes(NamedTuple):
  """The K possible results of one step and their probabilities.

  observations [K, O] float32, probabilities [K] (summing to 1), rewards
  [K] and terminated [K] (bool): outcome k gives observations[k],
  rewards[k] and terminated[k] with probability probabilities[k].
  """
  observations: np.ndarray
  probabilities: np.ndarray
  rewards: np.ndarray
  terminated: np.ndarray


def outcomes(rows) -> Outcomes:
  """Outcomes from (observation, probability, reward, terminated) rows."""
  obs, probs, rewards, done = zip(*rows)
  return Outcomes(np.asarray(obs, np.float32), np.asarray(probs, np.float64),
                  np.asarray(rewards, np.float64), np.asarray(done, bool))


class LabEnv(gym.Env):
  """A fully observed environment whose transition law is written out.

  Subclasses set `observation_space`, `action_space` and implement
  `initial_state(rng)` and `true_next_distribution(state, action)`;
  `probe_states(n, rng)` gives the states the lab measures the model at.
  """

  metadata = {'render_modes': []}

  def __init__(self):
    self.state: Optional[np.ndarray] = None

  def initial_state(self, rng: np.random.Generator) -> np.ndarray:
    raise NotImplementedError

  def true_next_distribution(self, state, action) -> Outcomes:
    """The law of (next observation, reward, terminated) given (s, a)."""
    raise NotImplementedError

  def probe_states(self, n: int, rng: np.random.Generator) -> np.ndarray:
    """[n, O] states at which the lab compares the model with the truth."""
    return np.stack([self.initial_state(rng) for _ in range(n)])

  def sample_next(self, state, action, n: int, rng: np.random.Generator
                  ) -> np.ndarray:
    """n next observations [n, O] drawn from the true law at (s, a)."""
    law = self.true_next_distribution(state, action)
    picks = rng.choice(len(law.probabilities), size=n, p=law.probabilities)
    return law.observations[picks]

  def expected_reward(self, state, action) -> float:
    law = self.true_next_distribution(state, action)
    return float(np.dot(law.probabilities, law.rewards))

  def set_state(self, state) -> np.ndarray:
    """Puts the environment in `state` (an observation); returns it."""
    self.state = np.asarray(state, np.float32).copy()
    return self.state.copy()

  def reset(self, *, seed=None, options=None):
    super().reset(seed=seed)
    self.state = np.asarray(self.initial_state(self.np_random), np.float32)
    return self.state.copy(), {}

  def step(self, action):
    law = self.true_next_distribution(self.state, action)
    k = self.np_random.choice(len(law.probabilities), p=law.probabilities)
    self.state = law.observations[k].copy()
    return (self.state.copy(), float(law.rewards[k]),
            bool(law.terminated[k]), False, {})
