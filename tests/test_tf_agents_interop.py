"""Tests for wm_tf/interop/tf_agents.py (skipped without tf-agents).

tf-agents is an optional extra; CI installs it with
  pip install --no-deps tf-agents==0.19.0 gym==0.23.0 gym-notices gin-config
The wrapped policy is checked against our own policy's deterministic
actions, driven through a gymnasium episode by a tf-agents driver (and
against the same episode played without tf-agents), and saved with
PolicySaver and reloaded.
"""

import subprocess
import sys

import gymnasium as gym
import keras
import numpy as np
import pytest
import tensorflow as tf

tf_agents = pytest.importorskip("tf_agents")

from tf_agents.drivers import py_driver  # noqa: E402
from tf_agents.policies import policy_saver, py_tf_eager_policy  # noqa: E402
from tf_agents.trajectories import time_step as ts  # noqa: E402

from wm_tf import config as config_lib  # noqa: E402
from wm_tf.agent.builder import build_agent  # noqa: E402
from wm_tf.interop import tf_agents as wm_tf_agents  # noqa: E402
from wm_tf.runtime import export  # noqa: E402
from wm_tf.runtime.environments import inspect_env  # noqa: E402

TINY = [f"{key}.units=8" for key in (
    "encoder", "representation_learner", "dynamics", "heads.reward",
    "heads.continue", "heads.decoder", "actor", "critic")] + [
    "representation_learner.latent_dim=4", "run.jit=false"]


def make_agent(env_id, seed, representation="mlp"):
    """A tiny agent with randomised acting weights, and its EnvSpec.

    The actor's outputs are centred on a probe batch, so discrete actions
    split about evenly whatever the noise drew.
    """
    keras.utils.set_random_seed(seed)
    spec = inspect_env(env_id)
    agent = build_agent(config_lib.load_config(None, TINY + [
        f"representation_learner.type={representation}"]), spec)
    rng = np.random.default_rng(seed)
    for v in agent.world_model.variables + agent.actor.variables:
        scale = 1.5 if v.path.endswith("out/kernel") else 0.3
        v.assign(v.numpy() + rng.normal(scale=scale, size=v.shape))
    probe = rng.normal(size=(256, spec.observation_dim)).astype(np.float32)
    actor = agent.actor
    outputs = actor.out(actor.mlp(agent.world_model.encode(
        {"observation": probe}))).numpy()
    actor.out.bias.assign(actor.out.bias.numpy() - np.median(outputs, 0))
    return agent, spec


@pytest.fixture(scope="module", params=["CartPole-v1", "Pendulum-v1"])
def setup(request):
    agent, spec = make_agent(request.param, seed=1)
    serving = export.ServingPolicy(agent.policy, spec)
    return agent, spec, wm_tf_agents.WorldModelPolicy(serving)


def expected_actions(agent, spec, obs):
    """Our policy's deterministic actions on first steps, in the
    environment's form (the MLP representation ignores the state)."""
    n = len(obs)
    actions = agent.policy.act_deterministic(
        {"observation": obs}, np.ones(n, bool),
        agent.policy.initial_state(n))[0].numpy()
    return actions.argmax(-1) if spec.discrete else actions


def check_actions(spec, actual, expected):
    if spec.discrete:
        np.testing.assert_array_equal(actual, expected)
    else:
        # Eager and traced float32 kernels differ in the last bits.
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=5e-5)


def time_steps(obs, step_type):
    n = len(obs)
    return ts.TimeStep(
        step_type=tf.fill([n], tf.constant(step_type, tf.int32)),
        reward=tf.zeros([n]), discount=tf.ones([n]),
        observation=tf.constant(obs))


def test_interop_package_does_not_import_tf_agents():
    code = ("import sys, wm_tf.interop; "
            "assert 'tf_agents' not in sys.modules, 'imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_specs(setup):
    _, spec, policy = setup
    assert policy.time_step_spec.observation.shape == (spec.observation_dim,)
    assert policy.policy_state_spec == ()
    action_spec = policy.action_spec
    if spec.discrete:
        assert action_spec.dtype == tf.int64 and action_spec.shape == ()
        assert (action_spec.minimum, action_spec.maximum) == (0, 1)
    else:
        assert action_spec.dtype == tf.float32 and action_spec.shape == (1,)
        np.testing.assert_array_equal(action_spec.minimum, [-2.0])
        np.testing.assert_array_equal(action_spec.maximum, [2.0])


@pytest.mark.parametrize("step_type", [ts.StepType.FIRST, ts.StepType.MID])
def test_action_is_our_deterministic_action(setup, step_type):
    agent, spec, policy = setup
    obs = np.random.default_rng(2).normal(
        size=(32, spec.observation_dim)).astype(np.float32)
    step = policy.action(time_steps(obs, step_type))
    assert step.state == ()
    expected = expected_actions(agent, spec, obs)
    if spec.discrete:
        assert 0 < expected.sum() < 32, "both actions should occur"
    check_actions(spec, step.action.numpy(), expected)


def test_sampling_with_a_seed_is_reproducible(setup):
    agent, spec, _ = setup
    sampling = wm_tf_agents.WorldModelPolicy(
        export.ServingPolicy(agent.policy, spec),
        deterministic=False)
    obs = np.zeros((256, spec.observation_dim), np.float32)
    first = sampling.action(time_steps(obs, ts.StepType.MID), seed=5).action
    again = sampling.action(time_steps(obs, ts.StepType.MID), seed=5).action
    other = sampling.action(time_steps(obs, ts.StepType.MID), seed=6).action
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def play_without_tf_agents(agent, spec, seed):
    """Rewards of one deterministic episode played on gymnasium directly."""
    env = gym.make(spec.id)
    obs, _ = env.reset(seed=seed)
    rewards, done = [], False
    while not done:
        action = expected_actions(agent, spec, obs[None].astype(np.float32))[0]
        obs, reward, terminated, truncated, _ = env.step(action)
        rewards.append(reward)
        done = terminated or truncated
    env.close()
    return np.array(rewards, np.float32)


def test_driver_plays_the_same_episode(setup):
    agent, spec, policy = setup
    env = wm_tf_agents.GymnasiumEnvironment(spec.id, seed=3)
    trajectories = []
    driver = py_driver.PyDriver(
        env, py_tf_eager_policy.PyTFEagerPolicy(policy, use_tf_function=True),
        [trajectories.append], max_episodes=1)
    driver.run(env.reset())
    env.close()

    steps = [t for t in trajectories if not t.is_boundary()]
    observations = np.stack([t.observation for t in steps])
    actions = np.stack([t.action for t in steps])
    check_actions(spec, actions, expected_actions(agent, spec, observations))
    rewards = np.array([t.reward for t in steps], np.float32)
    # Continuous: actions differ in the last bits, and so do the states.
    np.testing.assert_allclose(
        rewards, play_without_tf_agents(agent, spec, seed=3), rtol=1e-3,
        atol=1e-3)
    assert steps[0].is_first() and steps[-1].is_last()


def test_policy_saver_round_trip(setup, tmp_path):
    agent, spec, policy = setup
    policy_saver.PolicySaver(policy, batch_size=None).save(str(tmp_path))
    loaded = tf.saved_model.load(str(tmp_path))
    obs = np.random.default_rng(4).normal(
        size=(16, spec.observation_dim)).astype(np.float32)
    step = time_steps(obs, ts.StepType.MID)
    state = loaded.get_initial_state(16)
    assert state == ()
    action = loaded.action(step, state).action.numpy()
    check_actions(spec, action, policy.action(step).action.numpy())
    check_actions(spec, action, expected_actions(agent, spec, obs))


def test_recurrent_state_is_carried_and_reset():
    agent, spec = make_agent("CartPole-v1", seed=5, representation="rssm")
    policy = wm_tf_agents.WorldModelPolicy(
        export.ServingPolicy(agent.policy, spec))
    size = agent.world_model.latent_dim + spec.action_dim
    assert policy.policy_state_spec.shape == (size,)
    rng = np.random.default_rng(6)
    obs = rng.normal(size=(2, 3, 4)).astype(np.float32)
    state = policy.get_initial_state(3)
    np.testing.assert_array_equal(state, np.zeros((3, size)))

    # The reference: our policy stepped in-process, its state flattened.
    own = agent.policy
    flat = lambda s: np.concatenate([s["latent"], s["action"]], -1)
    _, first_state, _ = own.act_deterministic(
        {"observation": obs[0]}, np.ones(3, bool), own.initial_state(3))
    _, second_state, _ = own.act_deterministic(
        {"observation": obs[1]}, np.zeros(3, bool), first_state)
    _, fresh_state, _ = own.act_deterministic(
        {"observation": obs[1]}, np.ones(3, bool), own.initial_state(3))

    first = policy.action(time_steps(obs[0], ts.StepType.FIRST), state)
    np.testing.assert_allclose(first.state, flat(first_state), atol=1e-5)
    carried = policy.action(time_steps(obs[1], ts.StepType.MID), first.state)
    np.testing.assert_allclose(carried.state, flat(second_state), atol=1e-5)
    # FIRST resets the carried state (TFPolicy's automatic state reset).
    reset = policy.action(time_steps(obs[1], ts.StepType.FIRST), first.state)
    np.testing.assert_allclose(reset.state, flat(fresh_state), atol=1e-5)
    assert np.abs(flat(second_state) - flat(fresh_state)).max() > 1e-3


def test_environment_ends_with_termination_or_truncation():
    env = wm_tf_agents.GymnasiumEnvironment("CartPole-v1", seed=0,
                                            max_episode_steps=3)
    step = env.reset()
    assert step.is_first()
    for _ in range(3):
        step = env.step(np.int64(0))
    assert step.is_last() and step.discount == 1.0  # truncated
    assert env.step(np.int64(0)).is_first()  # the base class resets

    env = wm_tf_agents.GymnasiumEnvironment("CartPole-v1", seed=0)
    step = env.reset()
    for _ in range(100):  # pushing one way topples the pole in ~10 steps
        step = env.step(np.int64(0))
        if step.is_last():
            break
    assert step.is_last() and step.discount == 0.0  # terminated
    env.close()
