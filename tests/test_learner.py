"""Tests for wm_tf/agent/learner.py and policy.py, and the Trainer's warmup.

Which update moves which variables is checked bit for bit: the actor and
critic update is run on its own (`ActorCritic.train`, eager) and
must leave every world-model variable identical; the world-model update
must leave actor and critic identical.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import SMALL_OVERRIDES, make_batch
from wm_tf import distributions
from wm_tf.agent.builder import build_agent
from wm_tf.config import load_config
from wm_tf.runtime.environments import EnvSpec
from wm_tf.runtime.trainer import Trainer


def _agent(overrides, spec, seed=0):
  keras.utils.set_random_seed(seed)
  return build_agent(load_config(None, overrides), spec)


def _with_live_reward_head(agent, seed=0):
  """Gives the reward head non-zero outputs.

  Reward head and critics start with zero output layers, so the imagined
  returns, the value targets and hence the critic's gradient are exactly 0
  until the world model has learned rewards.
  """
  out = agent.world_model.reward.out
  rng = np.random.default_rng(seed)
  out.kernel.assign(rng.normal(size=out.kernel.shape).astype(np.float32))
  out.bias.assign(np.ones(out.bias.shape, np.float32))
  return agent


def _snapshot(variables):
  return [v.numpy().copy() for v in variables]


def _identical(before, variables):
  return [np.array_equal(b, v.numpy()) for b, v in zip(before, variables)]


def _changed(before, variables):
  """Paths of the variables whose value differs from `before`."""
  return {v.path for v, same in zip(variables, _identical(before, variables))
          if not same}


def _start_states(agent, batch):
  latent = agent.world_model.encode(batch)
  start = tf.reshape(latent, [-1, latent.shape[-1]])
  alive = 1.0 - tf.reshape(tf.cast(batch['is_terminal'], tf.float32), [-1])
  return start, alive


def _world_model_state(agent):
  """World-model weights plus its optimizer's slots and step counter."""
  return (agent.world_model.variables +
          agent.world_model.optimizer.variables)


@pytest.mark.parametrize('gradient', ['dynamics', 'reinforce'])
def test_actor_critic_update_leaves_world_model_bit_identical(
    small_overrides, cartpole_spec, batch_factory, gradient):
  agent = _agent(small_overrides + [f'actor.gradient={gradient}',
                                    'optimizers.actor.learning_rate=0.01',
                                    'optimizers.critic.learning_rate=0.01'],
                 cartpole_spec)
  _with_live_reward_head(agent)
  learner = agent.learner
  wm_vars = _world_model_state(agent)
  actor_vars = agent.actor.trainable_variables
  critic_vars = agent.critic.trainable_variables
  slow_vars = agent.slow_critic.variables
  wm_before = _snapshot(wm_vars)
  actor_before = _snapshot(actor_vars)
  critic_before = _snapshot(critic_vars)
  slow_before = _snapshot(slow_vars)

  for step in range(3):
    start, alive = _start_states(agent, batch_factory(step))
    metrics = agent.learner.actor_critic.train(
        agent.world_model, start, alive, tf.constant([step, 5]))
    assert np.isfinite(float(metrics['actor/loss']))
    assert np.isfinite(float(metrics['critic/loss']))

  assert not _changed(wm_before, wm_vars)
  # The actor's output layer gets a gradient from either estimator; with
  # 'dynamics' every actor weight does (through the straight-through
  # sample and the dynamics).
  actor_changed = _changed(actor_before, actor_vars)
  assert {'actor/out/kernel', 'actor/out/bias'} <= actor_changed
  if gradient == 'dynamics':
    assert actor_changed == {v.path for v in actor_vars}
  # The critic's zero-initialised output layer moves first.
  assert {'critic/out/kernel', 'critic/out/bias'} <= _changed(critic_before,
                                                              critic_vars)
  # The slow critic follows the critic.
  assert _changed(slow_before, slow_vars)
  assert int(agent.world_model.optimizer.iterations.numpy()) == 0
  assert int(learner.actor_critic.actor_optimizer.iterations.numpy()) == 3


def test_train_world_model_leaves_actor_and_critic_unchanged(
    small_overrides, cartpole_spec, batch_factory):
  agent = _agent(small_overrides, cartpole_spec)
  learner = agent.learner
  others = (agent.actor.variables + agent.critic.variables +
            agent.slow_critic.variables +
            learner.actor_critic.actor_optimizer.variables +
            learner.actor_critic.critic_optimizer.variables +
            [learner.actor_critic.return_scale])
  wm_vars = agent.world_model.trainable_variables
  others_before = _snapshot(others)
  wm_before = _snapshot(wm_vars)
  for step in range(3):
    metrics = learner.train_world_model(batch_factory(20 + step))
  assert all(_identical(others_before, others))
  # Every world-model weight takes part in the loss, so every one moves.
  assert _changed(wm_before, wm_vars) == {v.path for v in wm_vars}
  assert 'actor/loss' not in metrics
  assert np.isfinite(float(metrics['world_model/loss']))
  assert int(learner.train_steps.numpy()) == 3


# ---------------------------------------------------------------------------
# Compiled functions trace once.
# ---------------------------------------------------------------------------


@pytest.fixture(scope='module')
def jit_agent():
  """One XLA-compiled agent for the module: each compile takes seconds."""
  spec = EnvSpec('CartPole-v1', observations=4, action_dim=2,
                 discrete=True)
  agent = _agent(list(SMALL_OVERRIDES) + ['run.jit=true'], spec)
  return agent, spec


def test_compiled_train_traces_once(jit_agent):
  """Five XLA-compiled steps, new batches and seeds: one trace.

  The last two run with the world model's learning rate set to 0.0 (a
  variable, so no retrace): Adam then moves no world-model weight, and any
  change would have to come from the actor or critic losses.
  """
  agent, spec = jit_agent
  learner = agent.learner
  rng = np.random.default_rng(0)
  losses = []

  def step():
    batch = make_batch(spec, rng)
    seed = tf.constant(rng.integers(0, 2**31 - 1, 2), tf.int32)
    metrics = learner.train(batch, seed)
    losses.append(float(metrics['world_model/loss']))
    return metrics

  # Weights only: the world model may keep counters (e.g. of loss calls
  # for its seeds) that rightly advance whenever its loss is computed.
  wm_vars = agent.world_model.trainable_variables
  actor_vars = agent.actor.trainable_variables
  critic_vars = agent.critic.trainable_variables
  wm_start = _snapshot(wm_vars)
  for _ in range(3):
    step()
  assert _changed(wm_start, wm_vars)  # lr > 0: it trains

  agent.world_model.optimizer.learning_rate = 0.0
  wm_before = _snapshot(wm_vars)
  actor_before = _snapshot(actor_vars)
  critic_before = _snapshot(critic_vars)
  for _ in range(2):
    metrics = step()
  assert float(metrics['world_model/grad_norm']) > 0  # it had gradients
  assert not _changed(wm_before, wm_vars)
  assert _changed(actor_before, actor_vars) == {v.path for v in actor_vars}
  assert {'critic/out/kernel', 'critic/out/bias'} <= _changed(critic_before,
                                                              critic_vars)

  assert learner.train.experimental_get_tracing_count() == 1
  assert int(learner.train_steps.numpy()) == 5
  assert len(set(losses)) == 5  # really different batches
  assert all(np.isfinite(losses))


@pytest.mark.parametrize('overrides', [
    ['dynamics.type=ensemble', 'imagination.sample_dynamics=true'],
    ['representation_learner.type=rssm', 'world_model.target=copy'],
], ids=['ensemble', 'rssm-copy'])
def test_state_variables_cover_every_keras_variable(overrides):
  """Every variable Keras lists for the models and optimizers is in
  `state_variables`, so `compile_train` puts it back: also the ensemble's
  members, kept in a list the object graph misses."""
  spec = EnvSpec('CartPole-v1', observations=4, action_dim=2,
                 discrete=True)
  agent = _agent(list(SMALL_OVERRIDES) + overrides, spec)
  learner = agent.learner
  ids = {id(v) for v in learner.state_variables()}
  parts = [agent.world_model, agent.actor, agent.critic, agent.slow_critic,
           *learner.layout.optimizers.values()]
  if learner.target.is_separate:
    parts.append(learner.target.model)
  missing = [v.path for part in parts for v in part.variables
             if id(v.value) not in ids]
  assert missing == []


def test_compile_train_changes_nothing_and_is_not_retraced():
  """compile_train: every variable back bit for bit, and the next steps
  equal those of an agent that never called it (same init, same batches),
  with one trace of `train` in all."""
  spec = EnvSpec('CartPole-v1', observations=4, action_dim=2,
                 discrete=True)
  overrides = list(SMALL_OVERRIDES) + [
      'run.jit=true', 'world_model.target=ema', 'acting.uncertainty=true',
      'imagination.mode=dyna']
  compiled, plain = _agent(overrides, spec), _agent(overrides, spec)
  learner = compiled.learner
  state = learner.state_variables()
  # It covers the models, the optimizers and the learner's own state.
  ids = {id(v) for v in state}
  for part in (compiled.world_model, compiled.actor, compiled.critic,
               compiled.slow_critic, learner.target.model,
               *learner.layout.optimizers.values()):
    assert all(id(v.value) in ids for v in part.variables), part.name
  for variable in (learner.actor_critic.return_scale, learner.train_steps,
                   learner.uncertainty_calibration.threshold):
    assert id(variable) in ids
  before = [v.numpy().copy() for v in state]
  rng = np.random.default_rng(4)
  batch = make_batch(spec, rng, 4, 8)
  learner.compile_train({k: tf.zeros_like(v) for k, v in batch.items()})
  assert learner.train.experimental_get_tracing_count() == 1
  for variable, value in zip(state, before):
    np.testing.assert_array_equal(variable.numpy(), value, variable.name)

  seeds = [tf.constant([3, 4]), tf.constant([5, 6])]
  batches = [batch, make_batch(spec, rng, 4, 8)]
  got = [learner.train(b, s) for b, s in zip(batches, seeds)]
  want = [plain.learner.train(b, s) for b, s in zip(batches, seeds)]
  for g, w in zip(got, want):
    assert set(g) == set(w)
    for name in g:
      np.testing.assert_array_equal(g[name].numpy(), w[name].numpy(), name)
  for a, b in zip(state, plain.learner.state_variables()):
    np.testing.assert_array_equal(a.numpy(), b.numpy(), a.name)
  assert learner.train.experimental_get_tracing_count() == 1


def test_policy_act_traces_once_across_batch_sizes(jit_agent):
  agent, spec = jit_agent
  policy = agent.policy
  rng = np.random.default_rng(1)
  for n in (1, 3, 7, 2):
    obs = tf.constant(rng.normal(size=(n, spec.observation_dim)), tf.float32)
    is_first = tf.constant(rng.random(n) < 0.5)
    action, state, _ = policy.act({'observation': obs},
        is_first, policy.initial_state(n),
                                  tf.constant([n, 0], tf.int32))
    action = action.numpy()
    assert action.shape == (n, spec.action_dim)
    np.testing.assert_allclose(action.sum(-1), 1.0, atol=1e-6)
    mode = policy.act_deterministic({'observation': obs},
        is_first, state)[0].numpy()
    assert mode.shape == (n, spec.action_dim)
    np.testing.assert_array_equal(mode.sum(-1), 1.0)
  assert policy.act.experimental_get_tracing_count() == 1
  assert policy.act_deterministic.experimental_get_tracing_count() == 1


# ---------------------------------------------------------------------------
# Warmup in the Trainer.
# ---------------------------------------------------------------------------


def test_trainer_trains_world_model_only_during_warmup(small_overrides,
                                                       tmp_path):
  """Trainer routes updates by env steps; the updates themselves are faked
  (they are tested above), so only the routing is under test here."""
  config = load_config(None, small_overrides + [
      'run.total_env_steps=60', 'run.prefill_steps=16', 'warmup.steps=40',
      'run.train_ratio=0.25', 'run.eval_every=0', 'run.log_every=1000',
      'replay.capacity=1000'])
  trainer = Trainer(config, str(tmp_path), progress=False)
  learner = trainer.agent.learner
  calls = []

  def fake(name):
    def update(batch, *seed):
      assert batch['observation'].shape == (4, 8, 4)
      assert len(seed) == (1 if name == 'full' else 0)
      if seed:
        assert seed[0].shape == (2,) and seed[0].dtype == tf.int32
      calls.append((name, trainer.env_steps))
      learner.train_steps.assign_add(1)
      return {f'{name}/loss': 0.0}
    return update

  learner.train_world_model = fake('world_model')
  learner.train = fake('full')
  trainer.run()

  wm_steps = [s for name, s in calls if name == 'world_model']
  full_steps = [s for name, s in calls if name == 'full']
  assert wm_steps and full_steps
  assert all(16 <= s < 40 for s in wm_steps), wm_steps
  assert all(40 <= s <= 60 for s in full_steps), full_steps
  # train_ratio 0.25 from step 16 to 60: 45 steps -> 11 updates.
  assert abs(len(calls) - 0.25 * 45) <= 1


def _with_continue_logit(agent, logit):
  """Makes the continue head predict sigmoid(logit) everywhere."""
  out = agent.world_model.continue_.out
  out.kernel.assign(np.zeros(out.kernel.shape, np.float32))
  out.bias.assign(np.full(out.bias.shape, logit, np.float32))
  return agent


@pytest.mark.parametrize('predict_continue', [True, False])
def test_predict_continue_switches_imagined_discounts(
    small_overrides, cartpole_spec, batch_factory, predict_continue):
  """world_model.predict_continue=false: imagined steps never end.

  The continue head predicts sigmoid(-3) ~ 0.047 everywhere. With the head
  in use the imagined continues are that value and the rollout weights
  decay as its powers; without it they are 1 and the weights stay at the
  start states' alive flags. The world-model loss is the same either way.
  """
  overrides = small_overrides + [
      f'world_model.predict_continue={str(predict_continue).lower()}']
  agent = _with_continue_logit(_agent(overrides, cartpole_spec), -3.0)
  batch = batch_factory(seed=3)
  start, alive = _start_states(agent, batch)
  _, metrics = agent.learner.actor_critic.loss(
      agent.world_model, start, alive, tf.constant([1, 2]))
  p = 1.0 / (1.0 + np.exp(3.0))
  probability = agent.world_model.continue_probability(start).numpy()
  horizon = agent.learner.actor_critic.settings.horizon
  if predict_continue:
    np.testing.assert_allclose(probability, p, rtol=1e-5)
    np.testing.assert_allclose(metrics['imagination/continue_mean'], p,
                               rtol=1e-5)
    # weights_t = alive * p^t, t = 0 .. H-1.
    expected = np.mean(alive.numpy()) * np.mean(p ** np.arange(horizon))
  else:
    np.testing.assert_array_equal(probability, 1.0)
    assert float(metrics['imagination/continue_mean']) == 1.0
    expected = np.mean(alive.numpy())
  np.testing.assert_allclose(metrics['imagination/weight_mean'], expected,
                             rtol=1e-5)

  other = _with_continue_logit(_agent(
      small_overrides + [f'world_model.predict_continue='
                         f'{str(not predict_continue).lower()}'],
      cartpole_spec), -3.0)
  seed = tf.constant([4, 5])
  loss = agent.world_model.world_model_loss(batch, seed)[2]
  other_loss = other.world_model.world_model_loss(batch, seed)[2]
  assert float(loss['world_model/continue_nll']) > 1.0  # the head is used
  np.testing.assert_allclose(float(loss['world_model/loss']),
                             float(other_loss['world_model/loss']), rtol=1e-6)


def _normal_algorithms(graph) -> set:
  """The `alg` inputs of the graph's StatelessRandomNormalV2 ops, nested
  function graphs included (1 Philox, 2 Threefry)."""
  algorithms = set()
  graphs = [graph] + list(getattr(graph, '_functions', {}).values())
  for g in graphs:
    g = getattr(g, 'graph', g)
    for op in g.get_operations():
      if op.type == 'StatelessRandomNormalV2':
        algorithms.add(int(tf.get_static_value(op.inputs[3])))
  return algorithms


def test_compiled_train_draws_threefry(jit_agent):
  """The XLA train step traces under `distributions.xla_sampling()`, which
  it leaves when tracing ends."""
  agent, spec = jit_agent
  batch = make_batch(spec, np.random.default_rng(0))
  seed = tf.constant([1, 2], tf.int32)
  graph = agent.learner.train.get_concrete_function(batch, seed).graph
  assert _normal_algorithms(graph) == {2}
  assert distributions.sampling_algorithm() == 'philox'
