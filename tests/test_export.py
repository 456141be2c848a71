"""Tests for wm_tf/runtime/export.py and launch/export.py.

A tiny agent's weights are randomised (so a restore that silently kept the
initial values would show), checkpointed by the Trainer into a run
directory, exported, and the SavedModel is checked against the in-process
policy: in a fresh interpreter that never imports wm_tf, with
saved_model_cli, and for a continuous action space.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from wm_tf import config as config_lib
from wm_tf.runtime import checkpoints, export
from wm_tf.runtime.trainer import Trainer

TINY = [f"{key}.units=8" for key in (
    "encoder", "representation_learner", "dynamics", "heads.reward",
    "heads.continue", "heads.decoder", "actor", "critic")] + [
    "representation_learner.latent_dim=4", "replay.capacity=64",
    "run.jit=false", "presets=[design]"]  # the stateless design: no RSSM

# Keeps TF's start-up chatter out of the subprocesses' stderr.
QUIET = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")


def randomise(agent, observation_dim, seed):
    """Adds noise to every acting weight, then centres the actor's outputs.

    Centring the outputs on a probe batch makes the discrete actions split
    about evenly, whatever the noise drew.
    """
    rng = np.random.default_rng(seed)
    for v in agent.world_model.variables + agent.actor.variables:
        scale = 1.5 if v.path.endswith("out/kernel") else 0.3
        v.assign(v.numpy() + rng.normal(scale=scale, size=v.shape))
    probe = rng.normal(size=(256, observation_dim)).astype(np.float32)
    actor = agent.actor
    outputs = actor.out(actor.mlp(agent.world_model.encode(
        {"observation": probe}))).numpy()
    actor.out.bias.assign(actor.out.bias.numpy() - np.median(outputs, 0))


def make_run(logdir, env_id, seed, overrides=()):
    """A run directory as the trainer leaves it; returns the Trainer."""
    config = config_lib.load_config(
        None, TINY + [f"env.id={env_id}"] + list(overrides))
    trainer = Trainer(config, str(logdir), progress=False)
    randomise(trainer.agent, trainer.spec.observation_dim, seed)
    trainer.checkpoints.save(checkpoint_number=7)
    return trainer


def observations(n, dim, seed):
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


def first_actions(policy, obs):
    """The in-process policy's deterministic actions on first steps."""
    n = len(obs)
    return policy.act_deterministic({"observation": obs}, np.ones(n, bool),
                                    policy.initial_state(n))[0].numpy()


@pytest.fixture(scope="module")
def cartpole(tmp_path_factory):
    root = tmp_path_factory.mktemp("cartpole")
    trainer = make_run(root / "run", "CartPole-v1", seed=1)
    path = export.export_run(str(root / "run"), str(root / "models"))
    return {"root": root, "trainer": trainer, "path": path,
            "model": tf.saved_model.load(path)}


@pytest.fixture(scope="module")
def pendulum(tmp_path_factory):
    root = tmp_path_factory.mktemp("pendulum")
    trainer = make_run(root / "run", "Pendulum-v1", seed=2)
    path = export.export_run(str(root / "run"), str(root / "models"))
    return {"trainer": trainer, "path": path,
            "model": tf.saved_model.load(path)}


def serve(model, obs, deterministic, seed=(0, 0), signature="serving_default"):
    state = model.signatures["initial_state"](
        batch_size=tf.constant(len(obs)))["state"]
    out = model.signatures[signature](
        observation=tf.constant(obs), state=state,
        deterministic=tf.constant(deterministic),
        seed=tf.constant(seed, tf.int32))
    return {k: v.numpy() for k, v in out.items()}


# --------------------------------------------------------------------------
# The SavedModel loaded by TensorFlow alone.

LOAD_AND_PLAY = textwrap.dedent("""
    import json, sys
    import gymnasium as gym
    import numpy as np
    import tensorflow as tf

    model_dir, data_dir = sys.argv[1:3]
    model = tf.saved_model.load(model_dir)
    serve = model.signatures["serving_default"]
    obs = np.load(data_dir + "/observations.npy")
    expected = np.load(data_dir + "/expected.npy")
    state = model.initial_state(tf.constant(len(obs)))["state"]
    out = serve(observation=tf.constant(obs), state=state,
                deterministic=tf.constant(True), seed=tf.constant([0, 0]))
    result = {
        "one_hot": out["action_one_hot"].numpy().tolist(),
        "index": out["action"].numpy().tolist(),
        "state_shape": list(out["next_state"].shape),
    }

    env = gym.make("CartPole-v1")
    o, _ = env.reset(seed=0)
    state = model.initial_state(tf.constant(1))["state"]
    steps, done = 0, False
    while not done:
        out = serve(observation=tf.constant(o[None], tf.float32), state=state,
                    deterministic=tf.constant(False),
                    seed=tf.constant([steps, 3]))
        state = out["next_state"]
        o, _, terminated, truncated, _ = env.step(int(out["action"][0]))
        steps, done = steps + 1, terminated or truncated
    result["episode_length"] = steps
    result["episode_ended"] = bool(terminated or truncated)
    result["wm_tf_imported"] = "wm_tf" in sys.modules
    print(json.dumps(result))
""")


def test_loads_without_wm_tf_acts_like_the_policy_and_plays(cartpole,
                                                             tmp_path):
    obs = observations(64, 4, seed=3)
    expected = first_actions(cartpole["trainer"].agent.policy, obs)
    assert 0 < expected[:, 0].sum() < 64, "both actions should occur"
    np.save(tmp_path / "observations.npy", obs)
    np.save(tmp_path / "expected.npy", expected)

    proc = subprocess.run(
        [sys.executable, "-c", LOAD_AND_PLAY, cartpole["path"], str(tmp_path)],
        cwd=tmp_path, env=QUIET, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])

    np.testing.assert_array_equal(result["one_hot"], expected)
    np.testing.assert_array_equal(result["index"], expected.argmax(-1))
    assert result["state_shape"] == [64, 0]
    assert result["episode_ended"] and result["episode_length"] >= 1
    assert result["wm_tf_imported"] is False


def test_action_signature_is_serving_default(cartpole):
    obs = observations(16, 4, seed=4)
    a = serve(cartpole["model"], obs, False, (5, 6), "serving_default")
    b = serve(cartpole["model"], obs, False, (5, 6), "action")
    for key in ("action", "action_one_hot", "next_state"):
        np.testing.assert_array_equal(a[key], b[key])


def test_state_and_metadata(cartpole):
    model = cartpole["model"]
    assert model.initial_state(tf.constant(5))["state"].shape == (5, 0)
    meta = {k: v.numpy() for k, v in model.signatures["metadata"]().items()}
    assert meta.pop("observation_keys").tolist() == [b"observation"]
    env = json.loads(meta.pop("env_config").decode())
    assert env == config_lib.to_dict(cartpole["trainer"].config.env)
    assert env["id"] == "CartPole-v1"
    assert meta == {"state_size": 0, "observation_dim": 4, "action_dim": 2,
                    "discrete": True}


def test_sampling_is_reproducible_and_follows_the_actor(cartpole):
    model = cartpole["model"]
    agent = cartpole["trainer"].agent
    # The observation whose action is least certain tests sampling most.
    candidates = observations(64, 4, seed=5)
    probs = agent.actor(
        agent.world_model.encode({"observation": candidates})
    ).probs_parameter().numpy()
    i = np.argmin(np.abs(probs[:, 0] - 0.5))
    assert 0.2 < probs[i, 0] < 0.8
    obs = np.repeat(candidates[i:i + 1], 4000, axis=0)

    first = serve(model, obs, False, (7, 11))
    again = serve(model, obs, False, (7, 11))
    other = serve(model, obs, False, (8, 11))
    np.testing.assert_array_equal(first["action"], again["action"])
    assert not np.array_equal(first["action"], other["action"])
    np.testing.assert_array_equal(
        first["action_one_hot"], np.eye(2)[first["action"]])
    # Binomial std of a frequency over 4000 draws is at most 0.008.
    frequency = np.bincount(first["action"], minlength=2) / len(obs)
    np.testing.assert_allclose(frequency, probs[i], atol=0.04)


def test_saved_model_cli_lists_the_signatures(cartpole):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    module = "tensorflow.python.tools.saved_model_cli"
    command = [cli] if os.path.exists(cli) else [sys.executable, "-m", module]
    proc = subprocess.run(
        command + ["show", "--all", "--dir", cartpole["path"]],
        env=QUIET, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    blocks = {}
    for block in proc.stdout.split("signature_def['")[1:]:
        name, body = block.split("']", 1)
        blocks[name] = body.split("Method name")[0]
    assert {"serving_default", "action", "initial_state"} <= set(blocks)
    for name in ("serving_default", "action"):
        for key in ("observation", "state", "deterministic", "seed"):
            assert f"inputs['{key}']" in blocks[name], (name, key)
        for key in ("action", "action_one_hot", "next_state"):
            assert f"outputs['{key}']" in blocks[name], (name, key)
    assert "inputs['batch_size']" in blocks["initial_state"]
    assert "outputs['state']" in blocks["initial_state"]


# --------------------------------------------------------------------------
# Continuous actions.

def test_pendulum_actions_match_and_stay_in_bounds(pendulum):
    model = pendulum["model"]
    agent = pendulum["trainer"].agent
    obs = observations(256, 3, seed=6) * 10.0  # large inputs saturate tanh
    out = serve(model, obs, True)
    assert out.keys() == {"action", "next_state"}
    np.testing.assert_allclose(
        out["action"], first_actions(agent.policy, obs),
        rtol=1e-5, atol=5e-5)
    for seed in ((1, 2), (3, 4)):
        sampled = serve(model, obs, False, seed)["action"]
        assert sampled.shape == (256, 1) and sampled.dtype == np.float32
        assert np.all(sampled >= -2.0) and np.all(sampled <= 2.0)
        np.testing.assert_array_equal(
            sampled, serve(model, obs, False, seed)["action"])
    meta = model.signatures["metadata"]()
    np.testing.assert_array_equal(meta["action_low"].numpy(), [-2.0])
    np.testing.assert_array_equal(meta["action_high"].numpy(), [2.0])


# --------------------------------------------------------------------------
# Restoring checks, versions and errors.

def test_restore_checks_reach_every_acting_variable(cartpole):
    agent = cartpole["trainer"].agent
    serving = export.ServingPolicy(agent.policy, cartpole["trainer"].spec)
    assert export.unreachable_variables(
        tf.train.Checkpoint(**checkpoints.agent_checkpoint_objects(agent)),
        serving.serving_variables) == []
    actor_only = tf.train.Checkpoint(actor=agent.actor)
    missing = export.unreachable_variables(actor_only,
                                           serving.serving_variables)
    encoder_ids = {id(v.value) for v in agent.world_model.encoder.variables}
    assert encoder_ids <= {id(v) for v in missing}


def test_config_that_does_not_match_the_checkpoint(cartpole, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(cartpole["root"] / "run" / "checkpoints",
                    run / "checkpoints")
    config = config_lib.load_config(None, TINY + ["actor.units=16"])
    (run / "config.yaml").write_text(config_lib.to_yaml(config))
    with pytest.warns(RuntimeWarning, match="does not fit"):
        with pytest.raises(export.ExportError,
                           match="does not fit the agent that config.yaml"):
            export.restore_run(str(run))


def test_missing_run_pieces(tmp_path):
    with pytest.raises(export.ExportError, match="does not exist"):
        export.export_run(str(tmp_path / "nope"), str(tmp_path / "out"))
    with pytest.raises(export.ExportError, match="no config.yaml"):
        export.export_run(str(tmp_path), str(tmp_path / "out"))
    (tmp_path / "config.yaml").write_text("env: {id: CartPole-v1}\n")
    with pytest.raises(export.ExportError, match="no checkpoint"):
        export.export_run(str(tmp_path), str(tmp_path / "out"))
    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(export.ExportError, match="no checkpoint"):
        export.export_run(str(tmp_path), str(tmp_path / "out"))


def test_versions(tmp_path):
    assert export.next_version(str(tmp_path / "absent")) == 1
    for name in ("1", "4", "notes", ".partial-9-1"):
        (tmp_path / name).mkdir()
    (tmp_path / "12").write_text("a file, not a version")
    assert export.next_version(str(tmp_path)) == 5
    assert export.version_path(str(tmp_path)) == str(tmp_path / "5")
    with pytest.raises(export.ExportError, match="already exists"):
        export.version_path(str(tmp_path), version=4)
    with pytest.raises(export.ExportError, match=">= 1"):
        export.version_path(str(tmp_path), version=0)
    with pytest.raises(export.ExportError, match="not a directory"):
        export.version_path(str(tmp_path / "12"))
    # Checked before the (slow) restore, whatever the run directory holds.
    with pytest.raises(export.ExportError, match="already exists"):
        export.export_run(str(tmp_path / "no-run"), str(tmp_path), version=1)


def test_launcher_exports_next_version(cartpole):
    models = cartpole["root"] / "models"
    proc = subprocess.run(
        [sys.executable, "-m", "launch.export",
         f"--logdir={cartpole['root'] / 'run'}", f"--output={models}"],
        env=QUIET, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(os.listdir(models)) == ["1", "2"]
    obs = observations(8, 4, seed=7)
    np.testing.assert_array_equal(
        serve(tf.saved_model.load(str(models / "2")), obs, True)["action"],
        serve(cartpole["model"], obs, True)["action"])


@pytest.mark.parametrize("flags", [["--logdir=/no/such/run"], []])
def test_launcher_error_is_one_message(tmp_path, flags):
    proc = subprocess.run(
        [sys.executable, "-m", "launch.export", *flags,
         f"--output={tmp_path / 'out'}"],
        env=QUIET, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ")
    assert "/no/such/run" in last or "--logdir" in last
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------
# The signatures check their inputs (from a loaded SavedModel, which does
# not check shapes against the signature's specs itself).

@pytest.mark.parametrize("observation, state, message", [
    (np.zeros((2, 4)), np.zeros((1, 0)),
     r"Input state must have the batch size B of the other inputs "
     r"\(observation, state\)"),
    (np.zeros((1, 5)), np.zeros((1, 0)),
     r"Input observation must be float32 \[B, 4\]; got shape\] \[1 5\]"),
    (np.zeros((1, 4, 4)), np.zeros((1, 0)),
     r"Input observation must be float32 \[B, 4\]; got shape\] \[1 4 4\]"),
    (np.zeros((1, 4)), np.zeros((1, 3)),
     r"Input state must be float32 \[B, 0\]; got shape\] \[1 3\]"),
    (np.array([[0.0, np.nan, 0.0, 0.0]]), np.zeros((1, 0)),
     r"Input observation float32 \[B, 4\] must be finite"),
])
def test_signatures_refuse_inconsistent_inputs(cartpole, observation, state,
                                               message):
    model = cartpole["model"]
    for name in ("serving_default", "action"):
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            model.signatures[name](
                observation=tf.constant(observation, tf.float32),
                state=tf.constant(state, tf.float32),
                deterministic=tf.constant(True), seed=tf.constant([0, 0]))
    with pytest.raises(tf.errors.InvalidArgumentError, match=">= 0"):
        model.signatures["initial_state"](batch_size=tf.constant(-1))
