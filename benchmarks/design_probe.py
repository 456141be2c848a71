"""One design-lab run: train an agent on a lab env, then measure its model.

Called in a worker process by benchmarks/design_lab.py; returns plain
JSON-ready numbers (see `train_and_measure`).
"""

from __future__ import annotations

from typing import Dict, Sequence

import gymnasium as gym
import numpy as np

import wm_tf.lab  # noqa: F401  (registers the lab environments)
from wm_tf.lab import dice, probes

PROBE_STATES = 16
# Die face of a one-hot observation: a mean one-hot reads as 3.5.
FACE_VALUES = np.arange(1, 7, dtype=np.float64)


def _probe_plan(env_name: str, env, rng):
  """(probe states [N, O], their env actions, coordinate of an obs)."""
  if env_name == 'dice':
    states = np.stack([dice.one_hot(f) for f in range(1, 7)])
    return states, np.full(6, dice.ROLL), lambda obs: obs @ FACE_VALUES
  states = env.probe_states(PROBE_STATES, rng)
  if env_name.startswith('corridor'):
    return states, np.ones(len(states), int), None
  return states, probes.random_actions(env, len(states), rng), None


def _histogram_samples(world_model, env_name, env, rng, samples) -> Dict:
  """True and imagined values of the plotted coordinate at one probe state
  (Dice: the face after a roll from face 1; Bounce: x at the peg)."""
  if env_name == 'dice':
    state, action, coordinate = dice.one_hot(1), dice.ROLL, (
        lambda obs: obs @ FACE_VALUES)
  elif env_name == 'bounce':
    state, action, coordinate = env.initial_state(rng), 1, (
        lambda obs: obs[:, 0])
  else:
    return {}
  imagined = probes.imagined_next(
      world_model, state[None], probes.agent_actions(env, [action]), samples,
      int(rng.integers(2 ** 31)))[:, 0]
  true = env.sample_next(state, action, samples, rng)
  return {'imagined': coordinate(imagined).round(4).tolist(),
          'true': coordinate(true).round(4).tolist()}


def measure(agent, config, env_name: str, env_id: str, samples: int,
            seed: int) -> Dict:
  """The model measures of a trained agent (see wm_tf.lab.probes)."""
  env = gym.make(env_id).unwrapped
  rng = np.random.default_rng(seed + 12345)
  wm, actor = agent.world_model, agent.actor
  states, actions, coordinate = _probe_plan(env_name, env, rng)
  result = probes.next_state_measures(wm, env, states, actions, rng,
                                      samples, coordinate=coordinate)
  result.update(probes.return_measures(
      wm, actor, lambda: gym.make(env_id).unwrapped, states,
      config.imagination.horizon, config.imagination.gamma,
      config.imagination.sample_dynamics, rng))
  limit = gym.spec(env_id).max_episode_steps or 200
  result.update(probes.value_measures(
      wm, agent.critic, actor, lambda: gym.make(env_id).unwrapped, states,
      min(limit, 200), config.imagination.gamma, rng))
  auroc = probes.ood_auroc(wm, env, rng)
  if auroc is not None:
    result['auroc'] = auroc
  result['histogram'] = _histogram_samples(wm, env_name, env, rng, samples)
  return result


def train_and_measure(config_path: str, overrides: Sequence[str],
                      env_name: str, logdir: str, samples: int) -> Dict:
  """Trains as configured (resuming a run in `logdir`), then measures.

  Returns the measures of `measure`, 'eval_return' (the last evaluation)
  and 'eval_curve' [(env steps, eval return)].
  """
  from wm_tf.config import load_config
  from wm_tf.runtime.trainer import Trainer
  config = load_config(config_path, overrides)
  trainer = Trainer(config, logdir, progress=False)
  trainer.run()
  result = measure(trainer.agent, config, env_name, config.env.id, samples,
                   config.seed)
  # From the history: a resumed run that had finished evaluates no more.
  result['eval_return'] = float(trainer.eval_history[-1]['eval/return'])
  result['eval_curve'] = [(int(r['env_steps']), float(r['eval/return']))
                          for r in trainer.eval_history]
  return result
