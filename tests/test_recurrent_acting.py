"""Acting with a recurrent latent state: wm_tf/agent/policy.py end to end.

The stateful policy (`Policy.act`, `act_deterministic`) is checked against
independent references: the world model's own sequence latents
(`WorldModel.latent_states` on the same [1, T] sequence, which runs the
representation's training-time scan) and a fresh initial state after a
reset. Then the same state through the collector (real CartPole, episodes
ending inside the window), the trainer's loop, and an exported SavedModel
stepped through a sequence and played by `evaluation.run_episodes`.
"""

import gymnasium as gym
import numpy as np
import pytest
import tensorflow as tf

from conftest import SMALL_OVERRIDES
from wm_tf.agent.builder import build_agent
from wm_tf.config import load_config
from wm_tf.runtime import collector as collector_lib
from wm_tf.runtime import evaluation, export
from wm_tf.runtime.environments import (EnvSpec, inspect_env, make_vector_env,
                                        to_env_actions)
from wm_tf.runtime.trainer import Trainer

CARTPOLE = EnvSpec('CartPole-v1', observations=4, action_dim=2,
                   discrete=True)
PENDULUM = EnvSpec('Pendulum-v1', observations=3, action_dim=1,
                   discrete=False, low=(-2.0,), high=(2.0,))
RSSM = ['representation_learner.type=rssm',
        'representation_learner.deter_dim=16']
CATEGORICAL = RSSM + ['representation_learner.latent=categorical',
                      'representation_learner.classes=4']


def _agent(spec, overrides=(), seed=0):
  tf.keras.utils.set_random_seed(seed)
  config = load_config(None, list(SMALL_OVERRIDES) + list(overrides))
  return build_agent(config, spec)


def _observations(n, t, dim, seed):
  return np.random.default_rng(seed).normal(size=(t, n, dim)).astype(
      np.float32)


def _step_through(policy, obs, is_first, seed=0, deterministic=False):
  """Steps `policy` along obs [T, N, O] with is_first [T, N] from its
  initial state; returns (actions [T, N, A], latents [T, N, D], state)."""
  state = policy.initial_state(obs.shape[1])
  actions, latents = [], []
  for t in range(len(obs)):
    if deterministic:
      action, state, _ = policy.act_deterministic({'observation': obs[t]},
          is_first[t], state)
    else:
      action, state, _ = policy.act({'observation': obs[t]}, is_first[t], state,
                                    tf.constant([seed, t], tf.int32))
    actions.append(action.numpy())
    latents.append(state['latent'].numpy())
  return np.stack(actions), np.stack(latents), state


def _episode_starts(length, n):
  """is_first [T, N]: one episode from step 0."""
  is_first = np.zeros((length, n), bool)
  is_first[0] = True
  return is_first


def _state_after_history(policy, n, length, dim, seed, deterministic=False):
  """The policy's state after an episode of `length` random observations."""
  history = _observations(n, length, dim, seed)
  return _step_through(policy, history, _episode_starts(length, n), seed=seed,
                       deterministic=deterministic)[2]


# ---------------------------------------------------------------------------
# The policy's state.


@pytest.mark.parametrize('overrides, recurrent', [(RSSM, True), ([], False)])
def test_history_changes_the_latent_only_for_a_recurrent_model(overrides,
                                                               recurrent):
  agent = _agent(CARTPOLE, overrides)
  policy = agent.policy
  assert policy.recurrent == recurrent
  n = 4
  probe = _observations(n, 1, 4, seed=9)[0]
  latents = []
  for history_seed in (1, 2):  # two different 5-step histories
    state = _state_after_history(policy, n, 5, 4, history_seed,
                                 deterministic=True)
    _, state, _ = policy.act_deterministic({'observation': probe},
        np.zeros(n, bool), state)
    latents.append(state['latent'].numpy())
  gap = np.abs(latents[0] - latents[1]).max(-1)  # per environment
  if recurrent:
    assert np.all(gap > 1e-2), gap
  else:
    np.testing.assert_allclose(latents[0], latents[1], atol=1e-6)
    np.testing.assert_allclose(
        latents[0], agent.world_model.encode({'observation': probe}).numpy(),
        atol=1e-5)


def test_is_first_resets_the_state():
  policy = _agent(CARTPOLE, RSSM).policy
  n = 3
  carried = _state_after_history(policy, n, 4, 4, seed=3)
  probe = _observations(n, 1, 4, seed=4)[0]
  # Rows 0 and 2 start an episode, row 1 continues its history.
  reset = np.array([True, False, True])
  action, after, _ = policy.act_deterministic({'observation': probe},
      reset, carried)
  fresh_action, fresh, _ = policy.act_deterministic(
      {'observation': probe}, np.ones(n, bool), policy.initial_state(n))
  np.testing.assert_allclose(after['latent'].numpy()[reset],
                             fresh['latent'].numpy()[reset], atol=1e-6)
  np.testing.assert_array_equal(action.numpy()[reset],
                                fresh_action.numpy()[reset])
  assert np.abs(after['latent'][1] - fresh['latent'][1]).max() > 1e-2
  # A step from the initial state is a first step whatever is_first says
  # (the SavedModel resets rows this way).
  _, unflagged, _ = policy.act_deterministic(
      {'observation': probe}, np.zeros(n, bool), policy.initial_state(n))
  np.testing.assert_allclose(unflagged['latent'], fresh['latent'], atol=1e-6)


@pytest.mark.parametrize('spec, jit, rssm', [
    (CARTPOLE, False, RSSM), (CARTPOLE, True, RSSM), (PENDULUM, False, RSSM),
    (CARTPOLE, True, CATEGORICAL), (PENDULUM, False, CATEGORICAL)])
def test_stepped_latents_equal_the_sequence_latents(spec, jit, rssm):
  agent = _agent(spec, rssm + [f'run.jit={str(jit).lower()}'])
  length = 12
  obs = _observations(1, length, spec.observation_dim, seed=5)
  is_first = _episode_starts(length, 1)
  is_first[7] = True  # an episode starts inside the window
  actions, latents, _ = _step_through(agent.policy, obs, is_first, seed=3)
  # The reference: the representation's scan over the whole [1, T] batch.
  batch = {'observation': tf.constant(obs.transpose(1, 0, 2)),
           'action': tf.constant(actions.transpose(1, 0, 2)),
           'is_first': tf.constant(is_first.T)}
  reference = agent.world_model.latent_states(batch).numpy()[0]
  np.testing.assert_allclose(latents[:, 0], reference, atol=1e-5)
  assert agent.policy.act.experimental_get_tracing_count() == 1


@pytest.mark.parametrize('rssm', [RSSM, CATEGORICAL])
def test_planner_plans_from_the_recurrent_latent(rssm):
  agent = _agent(PENDULUM, rssm + [
      'imagination.mode=mpc', 'mpc.samples=8', 'mpc.horizon=2',
      'mpc.iterations=2', 'mpc.elites=2'])
  policy = agent.policy
  n = 3
  state = _state_after_history(policy, n, 3, 3, seed=6)
  probe = _observations(n, 1, 3, seed=7)[0]
  seed = tf.constant([4, 5], tf.int32)
  action, after, _ = policy.act({'observation': probe},
      np.zeros(n, bool), state, seed)
  expected_latent = agent.world_model.observe_step(
      state['latent'], state['action'], {'observation': probe}, tf.zeros([n]))
  np.testing.assert_allclose(after['latent'], expected_latent, atol=1e-6)
  np.testing.assert_allclose(
      action, policy.planner.plan(expected_latent, seed), atol=1e-5)
  # Planning from the history-free latent would give other plans.
  alone = agent.world_model.encode({'observation': probe})
  assert np.abs(alone - expected_latent).max() > 1e-2


@pytest.mark.parametrize('rssm', [RSSM, CATEGORICAL])
def test_uncertainty_check_uses_the_recurrent_latent(rssm):
  agent = _agent(CARTPOLE, rssm + ['acting.uncertainty=true'])
  policy = agent.policy
  n = 64
  state = _state_after_history(policy, n, 3, 4, seed=8, deterministic=True)
  probe = _observations(n, 1, 4, seed=9)[0]
  seed = tf.constant([2, 3], tf.int32)
  # The reference latent and the sampled action's uncertainty, computed
  # without the policy; the threshold (read when `act` is first traced)
  # splits the states in two.
  latent = agent.world_model.observe_step(
      state['latent'], state['action'], {'observation': probe}, tf.zeros([n]))
  sampled = agent.actor(latent).sample(seed=seed)
  u = policy.uncertainty(latent, sampled).numpy()
  policy.uncertainty_threshold = float(np.median(u))
  unsure = u > policy.uncertainty_threshold
  assert 0 < unsure.sum() < n
  action, after, stats = policy.act({'observation': probe},
      np.zeros(n, bool), state, seed)
  np.testing.assert_allclose(after['latent'], latent, atol=1e-6)
  assert float(stats['acting/uncertain_steps']) == unsure.sum()
  expected = np.where(unsure[:, None],
                      agent.actor(latent).deterministic_action(), sampled)
  np.testing.assert_allclose(action, expected, atol=1e-6)
  # The history-free latent would be judged differently.
  alone = agent.world_model.encode({'observation': probe})
  u_alone = policy.uncertainty(alone, agent.actor(alone).sample(seed=seed))
  assert np.abs(u_alone.numpy() - u).max() > 1e-3


# ---------------------------------------------------------------------------
# The runtime: collector and trainer.


def test_collector_carries_the_state_per_environment():
  agent = _agent(CARTPOLE, RSSM)
  num_envs, steps = 3, 40
  spec = inspect_env('CartPole-v1', 9)
  envs = make_vector_env('CartPole-v1', num_envs, 'sync', 9)
  acting = collector_lib.PolicyActing(agent.policy, num_envs)
  records, latents = [], []
  try:
    collector = collector_lib.Collector(envs, spec, seed=0)
    for t in range(steps):
      records.append(collector.step(
          lambda obs: acting.act(obs, collector.is_first,
                                 tf.constant([t, 0], tf.int32))[0]))
      latents.append(acting.state['latent'].numpy())
  finally:
    envs.close()
  batch = {k: np.stack([r[k] for r in records], 1) for k in records[0]}
  # Episodes of at most 9 steps: several resets inside the 40 steps.
  assert batch['is_first'][:, 1:].sum(1).min() >= 3
  reference = agent.world_model.latent_states(
      {k: tf.constant(batch[k]) for k in ('observation', 'action',
                                          'is_first')}).numpy()
  np.testing.assert_allclose(np.stack(latents, 1), reference, atol=1e-5)


class _Recorder:
  """Wraps a compiled act function and keeps what went in and came out."""

  def __init__(self, fn):
    self.fn, self.calls = fn, []

  def __call__(self, observation, is_first, state, *seed):
    action, new_state, stats = self.fn(observation, is_first, state, *seed)
    self.calls.append((np.array(is_first), {k: v.numpy() for k, v in
                                            state.items()},
                       {k: v.numpy() for k, v in new_state.items()}))
    return action, new_state, stats


def _check_carried(calls, num_envs):
  np.testing.assert_array_equal(calls[0][1]['latent'], 0.0)
  for (_, _, out), (_, into, _) in zip(calls, calls[1:]):
    for key in ('latent', 'action'):
      np.testing.assert_array_equal(into[key], out[key])
  assert np.abs(calls[-1][1]['latent']).max() > 0
  assert all(len(first) == num_envs for first, _, _ in calls)


def test_trainer_collects_and_evaluates_with_the_carried_state(tmp_path):
  config = load_config(None, list(SMALL_OVERRIDES) + RSSM + [
      'env.num_envs=2', 'run.total_env_steps=24', 'run.prefill_steps=8',
      'run.eval_every=24', 'run.eval_episodes=2', 'run.log_every=1000',
      'run.train_ratio=0.1', 'env.max_episode_steps=10'])
  trainer = Trainer(config, str(tmp_path), progress=False)
  policy = trainer.agent.policy
  act = policy.act = _Recorder(policy.act)
  evaluate = policy.act_deterministic = _Recorder(policy.act_deterministic)
  trainer.run()
  # Prefill's 8 steps (4 per env) act at random; the policy the other 8.
  assert len(act.calls) == 8
  _check_carried(act.calls, 2)
  # The episodes of 10 steps at most restart inside the collected steps.
  assert any(first.any() for first, _, _ in act.calls[1:])
  assert len(evaluate.calls) >= 2
  _check_carried(evaluate.calls, 2)
  assert evaluate.calls[0][0].all() and not any(
      first.any() for first, _, _ in evaluate.calls[1:])


# ---------------------------------------------------------------------------
# The exported policy.


@pytest.fixture(scope='module', params=[RSSM, CATEGORICAL],
                ids=['gaussian', 'categorical'])
def exported(request, tmp_path_factory):
  root = tmp_path_factory.mktemp('recurrent_export')
  config = load_config(None, list(SMALL_OVERRIDES) + request.param)
  trainer = Trainer(config, str(root / 'run'), progress=False)
  # Episodes of varied lengths, whose actions depend on the history (with
  # draw 0 the categorical model's actor pushed one way in every state).
  rng = np.random.default_rng(0 if request.param is RSSM else 3)
  for v in trainer.agent.actor.variables:
    v.assign(v.numpy() + rng.normal(scale=0.5, size=v.shape))
  trainer.save_checkpoint()
  path = export.export_run(str(root / 'run'), str(root / 'models'))
  return trainer, tf.saved_model.load(path), path


def test_exported_rssm_steps_like_the_policy(exported):
  trainer, model, _ = exported
  policy = trainer.agent.policy
  n, length = 4, 10
  latent_dim = trainer.agent.world_model.latent_dim
  meta = model.signatures['metadata']()
  assert int(meta['state_size']) == latent_dim + 2
  obs = _observations(n, length, 4, seed=11)
  is_first = _episode_starts(length, n)
  is_first[6, 1] = True  # environment 1 restarts at step 6
  for deterministic in (True, False):
    actions, latents, _ = _step_through(policy, obs, is_first, seed=7,
                                        deterministic=deterministic)
    serve = model.signatures['serving_default']
    state = model.signatures['initial_state'](batch_size=tf.constant(n))[
        'state'].numpy()
    initial = state.copy()
    for t in range(length):
      state = np.where(is_first[t][:, None], initial, state)
      out = serve(observation=tf.constant(obs[t]), state=tf.constant(state),
                  deterministic=tf.constant(deterministic),
                  seed=tf.constant([7, t], tf.int32))
      state = out['next_state'].numpy()
      np.testing.assert_array_equal(out['action'].numpy(),
                                    actions[t].argmax(-1))
      np.testing.assert_allclose(state[:, :latent_dim], latents[t],
                                 atol=1e-5)
      np.testing.assert_allclose(state[:, latent_dim:], actions[t],
                                 atol=1e-6)
  # The exported policy uses history: the same observation after two
  # different histories gives different states.
  assert np.abs(latents[6, 0] - latents[6, 1]).max() > 0  # sanity
  start = model.signatures['initial_state'](batch_size=tf.constant(2))
  probe = np.repeat(obs[0, :1], 2, 0)
  histories = _observations(2, 3, 4, seed=12)
  state = start['state']
  for t in range(3):
    state = serve(observation=tf.constant(histories[t]), state=state,
                  deterministic=tf.constant(True),
                  seed=tf.constant([0, 0]))['next_state']
  state = serve(observation=tf.constant(probe), state=state,
                deterministic=tf.constant(True),
                seed=tf.constant([0, 0]))['next_state'].numpy()
  assert np.abs(state[0, :latent_dim] - state[1, :latent_dim]).max() > 1e-2


def _reference_returns(policy, spec, episodes, seed, carry=True):
  """In-process deterministic episodes, the state carried along each (or,
  with carry False, every step acting as a first step: no history)."""
  env = gym.make(spec.id)
  returns = []
  for i in range(episodes):
    obs, _ = env.reset(seed=seed + i)
    state, first, total, done = policy.initial_state(1), True, 0.0, False
    while not done:
      if not carry:
        state, first = policy.initial_state(1), True
      action, state, _ = policy.act_deterministic(
          {'observation': np.asarray(obs, np.float32)[None]},
              np.array([first]), state)
      obs, reward, terminated, truncated, _ = env.step(
          to_env_actions(action.numpy(), spec)[0])
      first, total, done = False, total + reward, terminated or truncated
    returns.append(total)
  env.close()
  return np.array(returns)


def test_evaluation_plays_the_exported_rssm_like_the_policy(exported):
  trainer, _, path = exported
  episodes, seed = 4, 21
  expected = _reference_returns(trainer.agent.policy, trainer.spec, episodes,
                                seed)
  assert len(set(expected.tolist())) > 1  # else matching proves little
  without_history = _reference_returns(trainer.agent.policy, trainer.spec,
                                       episodes, seed, carry=False)
  assert not np.array_equal(expected, without_history)
  saved = evaluation.policy_from_saved_model(path)
  np.testing.assert_array_equal(
      evaluation.run_episodes(saved, 'CartPole-v1', episodes, seed), expected)
