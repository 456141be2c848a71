"""Tests for wm_tf/runtime/portable_export.py and export_formats.py.

Tiny randomised runs (as in test_export.py) are exported as SavedModel,
ONNX and TFLite; onnxruntime and the plain TFLite interpreter then act
through real episodes, each carrying its own state, and are compared step
by step with the SavedModel's deterministic actions run by TensorFlow.
"""

import os
import re
import subprocess
import sys

import gymnasium as gym
import keras
import numpy as np
import pytest
import tensorflow as tf

from test_export import QUIET, make_run
from wm_tf.runtime import export, export_formats, portable_export

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")

ALL = ("saved_model", "onnx", "tflite")
CASES = [("CartPole-v1", "mlp"), ("Pendulum-v1", "mlp"),
         ("CartPole-v1", "rssm"), ("Pendulum-v1", "rssm"),
         ("CartPole-v1", "rssm_categorical")]
RSSM = ["representation_learner.type=rssm",
        "representation_learner.deter_dim=8"]
OVERRIDES = {"mlp": [], "rssm": RSSM,
             "rssm_categorical": RSSM + [
                 "representation_learner.latent=categorical",
                 "representation_learner.classes=4"]}


def export_case(root, env_id, representation, seed):
    # Keras draws initial weights from a global generator: seeding it makes
    # a case's model the same whichever cases ran before in the process.
    keras.utils.set_random_seed(seed)
    overrides = OVERRIDES[representation]
    trainer = make_run(root / "run", env_id, seed, overrides)
    paths = export.export_run_formats(str(root / "run"), str(root / "models"),
                                      formats=ALL)
    return {"root": root, "trainer": trainer, "paths": paths,
            "model": tf.saved_model.load(paths["saved_model"])}


@pytest.fixture(scope="module", params=CASES, ids=lambda c: "-".join(c))
def case(request, tmp_path_factory):
    env_id, representation = request.param
    root = tmp_path_factory.mktemp(f"{env_id}-{representation}")
    return export_case(root, env_id, representation,
                       seed=CASES.index(request.param) + 10)


class OnnxPolicy:
    def __init__(self, path):
        self.session = onnxruntime.InferenceSession(
            path, providers=["CPUExecutionProvider"])
        self.outputs = [o.name for o in self.session.get_outputs()]

    def __call__(self, **inputs):
        return dict(zip(self.outputs, self.session.run(self.outputs, inputs)))


def tflite_policy(path):
    return tf.lite.Interpreter(model_path=path).get_signature_runner(
        "serving_default")


def test_files_are_written_beside_the_saved_model(case):
    models = case["root"] / "models"
    assert sorted(os.listdir(models)) == ["1", "1.onnx", "1.tflite"]
    assert case["paths"] == {"saved_model": str(models / "1"),
                             "onnx": str(models / "1.onnx"),
                             "tflite": str(models / "1.tflite")}
    assert export.next_version(str(models)) == 2


# Absolute and relative tolerances. One step on the same inputs differs by
# float32 rounding of different kernels. A state each runtime carries
# itself starts from those differences, and a recurrent state can grow them
# over an episode.
STEP_TOLERANCE = 1e-4
CARRIED_TOLERANCE = 1e-3


def test_runtimes_act_like_tensorflow_through_episodes(case):
    """The env follows TensorFlow's actions. Each runtime acts on the
    observation with TensorFlow's state (one step's error) and with the state
    it carried itself from the episode's start (the caller's loop)."""
    model = case["model"]
    serve = model.signatures["serving_default"]
    spec = case["trainer"].spec
    recurrent = case["trainer"].agent.policy.recurrent
    runtimes = {"onnx": OnnxPolicy(case["paths"]["onnx"]),
                "tflite": tflite_policy(case["paths"]["tflite"])}
    size = int(model.signatures["metadata"]()["state_size"])
    env = gym.make(spec.id)
    observation, _ = env.reset(seed=0)
    tf_state = model.initial_state(tf.constant(1))["state"]
    carried = {name: np.zeros((1, size), np.float32) for name in runtimes}
    errors = {(name, kind): [0.0] for name in runtimes
              for kind in ("step", "carried")}
    actions = []
    for t in range(40):
        obs = observation[None].astype(np.float32)
        expected = serve(observation=tf.constant(obs), state=tf_state,
                         deterministic=tf.constant(True),
                         seed=tf.constant([0, 0]))
        expected = {k: v.numpy() for k, v in expected.items()}
        for name, runtime in runtimes.items():
            for kind, state in (("step", tf_state.numpy()),
                                ("carried", carried[name])):
                out = runtime(**({"observation": obs, "state": state}
                                 if recurrent else {"observation": obs}))
                assert set(out) == ({"action", "next_state"} if recurrent
                                    else {"action"})
                tolerance = (STEP_TOLERANCE if kind == "step"
                             else CARRIED_TOLERANCE)
                if spec.discrete:
                    assert out["action"].dtype == np.int64
                    np.testing.assert_array_equal(
                        out["action"], expected["action"], err_msg=(name, t))
                else:
                    assert out["action"].dtype == np.float32
                    np.testing.assert_allclose(
                        out["action"], expected["action"], rtol=tolerance,
                        atol=tolerance, err_msg=(name, kind, t))
                    errors[name, kind].append(float(np.max(np.abs(
                        out["action"] - expected["action"]))))
                if recurrent:
                    np.testing.assert_allclose(
                        out["next_state"], expected["next_state"],
                        rtol=tolerance, atol=tolerance,
                        err_msg=(name, kind, t))
                    errors[name, kind].append(float(np.max(np.abs(
                        out["next_state"] - expected["next_state"]))))
                    if kind == "carried":
                        carried[name] = out["next_state"]
        tf_state = tf.constant(expected["next_state"])
        action = expected["action"][0]
        actions.append(action)
        observation, _, terminated, truncated, _ = env.step(action)
        # Step 20 starts an episode whatever the policy: states reset.
        if terminated or truncated or t == 20:
            observation, _ = env.reset()
            tf_state = model.initial_state(tf.constant(1))["state"]
            carried = {name: np.zeros((1, size), np.float32)
                       for name in runtimes}
    if recurrent:
        # The runtimes' initial state (zeros) is the SavedModel's.
        np.testing.assert_array_equal(
            model.initial_state(tf.constant(3))["state"],
            np.zeros((3, size)))
    if spec.discrete:
        assert len(set(actions)) == 2, "both actions should occur"
    else:
        assert np.ptp(np.ravel(actions)) > 0.1
    print(spec.id, "recurrent" if recurrent else "stateless",
          {f"{name}/{kind}": f"{max(e):.2g}"
           for (name, kind), e in errors.items()})


def test_converted_graphs_hold_built_in_ops_only(case):
    model = onnx.load(case["paths"]["onnx"])
    onnx.checker.check_model(model)
    ops = {(node.domain, node.op_type) for node in model.graph.node}
    assert {domain for domain, _ in ops} <= {"", "ai.onnx"}
    assert all(onnx.defs.has(op) for _, op in ops), ops
    forbidden = re.compile(r"Broadcast|Random|Multinomial|Bitwise")
    assert not [op for _, op in ops if forbidden.search(op)]

    from tensorflow.lite.python import schema_py_generated as schema
    builtin = {n for n in vars(schema.BuiltinOperator) if not n.startswith("_")}
    interpreter = tf.lite.Interpreter(model_path=case["paths"]["tflite"])
    names = {op["op_name"] for op in interpreter._get_ops_details()}
    assert names and names <= builtin, names - builtin
    assert "FULLY_CONNECTED" in names


def test_the_saved_model_graph_is_not_portable_but_the_step_is(case):
    serving = export.ServingPolicy(case["trainer"].agent.policy,
                                   case["trainer"].spec)
    graph = serving.action.get_concrete_function().graph
    assert portable_export.forbidden_ops(graph), "the check must see them"
    portable = portable_export.PortablePolicy(serving.policy, serving.spec)
    assert portable_export.forbidden_ops(
        portable.step.get_concrete_function().graph) == []


def test_checks_find_non_portable_ops():
    @tf.function(input_signature=[tf.TensorSpec([None, 3])])
    def noisy(x):
        return x + tf.random.stateless_uniform(tf.shape(x), [1, 2])
    assert any("Random" in op for op in portable_export.forbidden_ops(
        noisy.get_concrete_function().graph))
    node = onnx.helper.make_node("BroadcastArgs", ["a", "b"], ["c"])
    graph = onnx.helper.make_graph([node], "g", [], [])
    assert portable_export.onnx_ops(onnx.helper.make_model(graph)) == [
        ":BroadcastArgs"]


def test_mpc_policies_are_refused_for_portable_formats(tmp_path):
    trainer = make_run(tmp_path / "run", "CartPole-v1", 3,
                       ["imagination.mode=mpc", "mpc.horizon=2",
                        "mpc.samples=8", "mpc.elites=2", "mpc.iterations=1"])
    with pytest.raises(export.ExportError, match="allowed for it: saved_model"):
        portable_export.PortablePolicy(trainer.agent.policy, trainer.spec)


# --------------------------------------------------------------------------
# Formats and versions.

def test_format_names_and_layout(tmp_path):
    assert export_formats.check_formats(["onnx", "saved_model", "onnx"]) == (
        "onnx", "saved_model")
    with pytest.raises(ValueError, match="'onxx'; allowed: saved_model, onnx,"
                       " tflite"):
        export_formats.check_formats(["saved_model", "onxx"])
    (tmp_path / "3.onnx").write_bytes(b"")
    (tmp_path / "5.tflite.partial").write_bytes(b"")
    (tmp_path / "2").mkdir()
    assert export_formats.taken_versions(str(tmp_path)) == (2, 3)
    assert export.next_version(str(tmp_path)) == 4
    with pytest.raises(export.ExportError, match="3.onnx' already exists"):
        export.format_paths(str(tmp_path), 3, ALL)


def test_launcher_refuses_an_unknown_format_at_once(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "launch.export", "--logdir=/no/such/run",
         f"--output={tmp_path / 'out'}", "--formats=saved_model,pb"],
        env=QUIET, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == ["error: --formats: Unknown export format 'pb'; allowed: "
                     "saved_model, onnx, tflite (comma-separated)."]
    assert not (tmp_path / "out").exists()


def test_launcher_writes_all_formats(case):
    if case["trainer"].spec.id != "CartPole-v1" or case[
            "trainer"].agent.policy.recurrent:
        pytest.skip("one launcher run is enough")
    models = case["root"] / "models"
    proc = subprocess.run(
        [sys.executable, "-m", "launch.export",
         f"--logdir={case['root'] / 'run'}", f"--output={models}",
         "--formats=onnx,tflite"],
        env=QUIET, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(os.listdir(models)) == ["1", "1.onnx", "1.tflite",
                                          "2.onnx", "2.tflite"]
    obs = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    np.testing.assert_array_equal(
        OnnxPolicy(str(models / "2.onnx"))(observation=obs)["action"],
        OnnxPolicy(case["paths"]["onnx"])(observation=obs)["action"])


# --------------------------------------------------------------------------
# docs/export.md: its commands and examples run as written, on a tiny run
# ('RUN' and the example's model directory replaced).

EXPORT_DOC = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "docs", "export.md")
DOC_MODELS = "/tmp/serving/cartpole"


def doc_blocks(language):
    with open(EXPORT_DOC, encoding="utf-8") as f:
        text = f.read()
    return re.findall(rf"^```{language}\n(.*?)^```$", text, re.M | re.S)


def cartpole(case, recurrent_too):
    if case["trainer"].spec.id != "CartPole-v1" or (
            not recurrent_too and case["trainer"].agent.policy.recurrent):
        pytest.skip("the docs' example is for a stateless CartPole policy")


def test_doc_commands_run_as_written(case, tmp_path):
    cartpole(case, recurrent_too=False)
    script = doc_blocks("bash")[0]
    assert "saved_model_cli run" in script and DOC_MODELS in script
    models = tmp_path / "serving"
    script = script.replace("RUN", str(case["root"] / "run")).replace(
        DOC_MODELS, str(models))
    path = os.pathsep.join([os.path.dirname(sys.executable),
                            os.environ.get("PATH", "")])
    proc = subprocess.run(["bash", "-e", "-c", script], env=dict(
        QUIET, PATH=path), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(os.listdir(models)) == ["1", "1.onnx", "1.tflite"]
    result = proc.stdout.split("Result for output key action:\n")[1]
    model = tf.saved_model.load(str(models / "1"))
    expected = model.signatures["serving_default"](
        observation=tf.constant([[0.01, 0.02, 0.03, 0.04]]),
        state=tf.zeros([1, 0]), deterministic=tf.constant(True),
        seed=tf.constant([1, 2]))["action"].numpy()
    assert result.splitlines()[0] == str(expected)


@pytest.mark.parametrize("index, runtime", [(0, "onnx"), (1, "tflite")])
def test_doc_examples_run_as_written(case, index, runtime):
    cartpole(case, recurrent_too=True)
    example = doc_blocks("python")[index]
    assert f"{DOC_MODELS}/1.{runtime}" in example
    models = case["root"] / "models"
    proc = subprocess.run(
        [sys.executable, "-c", example.replace(DOC_MODELS, str(models))],
        env=QUIET, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    model = case["model"]
    expected = model.signatures["serving_default"](
        observation=tf.constant([[0.01, 0.02, 0.03, 0.04]]),
        state=model.initial_state(tf.constant(1))["state"],
        deterministic=tf.constant(True),
        seed=tf.constant([0, 0]))["action"].numpy()
    assert proc.stdout.strip().splitlines()[-1] == str(expected)
