"""The deterministic policy as ONNX and TFLite files with built-in ops only.

The SavedModel (`wm_tf.runtime.export`) serves the whole acting policy:
sampling, planning, a `deterministic` switch and a stateless seed. Its
graph holds TFP's shape broadcasts, stateless random ops, seed bitwise
arithmetic and multinomial draws, which neither onnxruntime nor TFLite's
built-in ops run. `PortablePolicy` traces the deterministic path alone,
through the same Keras components and weights as in-process acting:

    latent_t = world_model.observe_step(latent_{t-1}, a_{t-1}, o_t)
    a_t      = actor(latent_t).deterministic_action()
               (argmax of the logits, one-hot; or tanh of the mean mapped
               into the bounds)

so its graph has matrix products, elementwise maths, reshapes, argmax and
one-hot only. `freeze` turns its variables into constants; `to_onnx` and
`to_tflite` convert that function and refuse any result that holds an op
outside the runtime's built-in set. Files, inputs and outputs:

  N.onnx, N.tflite (signature 'serving_default'):
    one input per observation key, under its name, as in the SavedModel
    (a vector env's: observation float32 [B, O]; images uint8
    [B, H, W, C])
    state       float32 [B, S]     (only with a recurrent representation)
      -> action int64 [B] (discrete: the action index) or float32 [B, A]
         (continuous, inside the bounds);
         next_state float32 [B, S] (only with a recurrent representation).

S = D + A as in the SavedModel (concat(latent, previous one-hot or
unclipped action)); the initial state, and a row's state where its episode
starts, is zeros [B, S]. A stateless representation has no state at all
(the SavedModel's S = 0 state is left out: zero-size tensors are not
portable).

Only policies that act with the actor can be exported so: imagination.mode
'mpc' and acting.fallback 'mpc' plan with random draws even when
deterministic. The uncertainty check with the 'mean_action' fallback
replaces a deterministic action with itself, so it is left out.
"""

from __future__ import annotations

import os
import re
import tempfile
from typing import Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf
from tensorflow.python.framework import convert_to_constants

from wm_tf.agent.policy import MeanActionFallback
from wm_tf.runtime.environments import EnvSpec
from wm_tf.runtime.export import ExportError, FlatPolicyState, _Untracked

# TensorFlow ops that ONNX runtimes or TFLite's built-in set cannot run:
# TFP's dynamic shape broadcasts, random draws (stateful or stateless),
# seed arithmetic on bits, and asserts.
FORBIDDEN_TF_OPS = re.compile(
    r'^(BroadcastArgs|BroadcastGradientArgs|.*Random.*|.*Multinomial.*|'
    r'Bitwise.*|LeftShift|RightShift|Assert|StatelessIf|If|While|'
    r'StatelessWhile)$')

ONNX_OPSET = 17


def forbidden_ops(graph: tf.Graph) -> List[str]:
  """The sorted op types of `graph` (and its functions) that match
  FORBIDDEN_TF_OPS."""
  types = {op.type for op in graph.get_operations()}
  for function in graph.as_graph_def().library.function:
    types.update(node.op for node in function.node_def)
  return sorted(t for t in types if FORBIDDEN_TF_OPS.match(t))


class PortablePolicy(tf.Module):
  """The deterministic acting step in portable ops (see the module doc).

  `step(*observation keys [B, *shape][, state [B, S]])` -> {'action',
  'next_state'} (state and next_state only when `recurrent`), the keys in
  `spec.observation_keys` order; `input_signature` is its signature.
  `call(inputs)` calls it with {input name: value}.

  Args:
    policy: the agent's `wm_tf.agent.policy.Policy`.
    spec: the environment's `EnvSpec`.

  Raises:
    ExportError: the policy plans (imagination.mode or acting.fallback
      'mpc'), which no deterministic plain-op function reproduces.
  """

  def __init__(self, policy, spec: EnvSpec, name: str = 'portable_policy'):
    super().__init__(name=name)
    if policy.planner is not None or (
        policy.uncertainty_threshold is not None
        and not isinstance(policy.fallback, MeanActionFallback)):
      raise ExportError(
          'Formats onnx and tflite export the actor\'s deterministic action; '
          'this policy plans with random draws (imagination.mode or '
          "acting.fallback 'mpc'); allowed for it: saved_model.")
    self._models = _Untracked(policy=policy)
    self.spec = spec
    self.recurrent = bool(policy.recurrent)
    self._state = FlatPolicyState(policy)
    self.state_size = int(self._state.size)
    self.input_signature = [
        tf.TensorSpec((None,) + o.shape, o.dtype, name=o.key)
        for o in spec.observations]
    if self.recurrent:
      self.input_signature.append(
          tf.TensorSpec([None, self.state_size], tf.float32, name='state'))
    keys = spec.observation_keys
    self.step = tf.function(
        lambda *args: self._step(dict(zip(keys, args[:len(keys)])),
                                 *args[len(keys):]),
        input_signature=self.input_signature, autograph=False)

  def call(self, inputs: Dict[str, object]) -> Dict[str, tf.Tensor]:
    """`step` with its inputs by name."""
    return self.step(*[inputs[s.name] for s in self.input_signature])

  def _step(self, observation, state=None) -> Dict[str, tf.Tensor]:
    policy = self._models.policy
    batch = tf.shape(observation[self.spec.observation_keys[0]])[0]
    previous = (self._state.unflatten(state) if self.recurrent
                else policy.initial_state(batch))
    # The caller resets a row to zeros where its episode starts, which is
    # what is_first does: the flag is always off here.
    latent = policy.world_model.observe_step(
        previous['latent'], previous['action'], observation,
        tf.zeros([batch], tf.bool))
    agent_action = policy.actor(latent).deterministic_action()
    if self.spec.discrete:
      outputs = {'action': tf.argmax(agent_action, -1, output_type=tf.int64)}
    else:
      outputs = {'action': tf.clip_by_value(agent_action, self.spec.low,
                                            self.spec.high)}
    if self.recurrent:
      outputs['next_state'] = tf.concat([latent, agent_action], -1)
    return outputs


def freeze(portable: PortablePolicy) -> tf.types.experimental.GenericFunction:
  """`portable.step` with its variables and captured tensors as constants.

  Converters see a function without captures (captured tensors would
  become extra model inputs), and the named outputs of `step`.

  Raises:
    ExportError: the traced step holds an op of FORBIDDEN_TF_OPS.
  """
  concrete = portable.step.get_concrete_function()
  bad = forbidden_ops(concrete.graph)
  if bad:
    raise ExportError(
        f'The deterministic policy\'s graph holds ops {bad} that ONNX and '
        'TFLite built-ins cannot run; allowed: plain tensor maths.')
  frozen = convert_to_constants.convert_variables_to_constants_v2(concrete)
  structure = concrete.structured_outputs
  return tf.function(
      lambda *inputs: tf.nest.pack_sequence_as(structure, frozen(*inputs)),
      input_signature=portable.input_signature)


def onnx_ops(model) -> List[str]:
  """Sorted 'domain:op_type' of the nodes of an ONNX model proto that are
  not standard ONNX operators."""
  import onnx  # pylint: disable=import-outside-toplevel
  return sorted({f'{node.domain}:{node.op_type}' for node in model.graph.node
                 if node.domain not in ('', 'ai.onnx')
                 or not onnx.defs.has(node.op_type)})


def to_onnx(frozen, input_signature: Sequence[tf.TensorSpec], path: str,
            opset: int = ONNX_OPSET) -> None:
  """Converts `frozen` (from `freeze`) to an ONNX file at `path`.

  Raises:
    ExportError: tf2onnx is missing, or the model holds an op that is not
      a standard ONNX operator.
  """
  try:
    import onnxruntime  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    import tf2onnx  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise ExportError(
        "Format onnx needs tf2onnx and onnxruntime: pip install -e '.[onnx]'."
    ) from None
  model, _ = tf2onnx.convert.from_function(
      frozen, input_signature=list(input_signature), opset=opset)
  bad = onnx_ops(model)
  if bad:
    raise ExportError(
        f'The ONNX model holds non-standard ops {bad}; allowed: ONNX '
        f'opset {opset} operators.')
  with open(path, 'wb') as f:
    f.write(model.SerializeToString())


def tflite_ops(model: bytes) -> List[str]:
  """Sorted names of the ops of a TFLite flatbuffer that are not built-in
  (select TF ops appear as Flex..., others as custom ops)."""
  from tensorflow.lite.python import schema_py_generated as schema  # pylint: disable=import-outside-toplevel
  builtin = {name for name in vars(schema.BuiltinOperator)
             if not name.startswith('_')}
  interpreter = tf.lite.Interpreter(model_content=model)
  return sorted({op['op_name'] for op in interpreter._get_ops_details()  # pylint: disable=protected-access
                 if op['op_name'] not in builtin})


def to_tflite(frozen, path: str) -> None:
  """Converts `frozen` (from `freeze`) to a TFLite file at `path`, with
  TFLite's built-in ops only and the signature 'serving_default'.

  Raises:
    ExportError: the conversion needs ops outside the built-in set.
  """
  with tempfile.TemporaryDirectory() as directory:
    # The converter takes signatures with their output names from a
    # SavedModel. The layers' custom gradients cannot be saved with the
    # frozen function, and are not needed to act.
    tf.saved_model.save(
        tf.Module(), directory,
        signatures={'serving_default': frozen.get_concrete_function()},
        options=tf.saved_model.SaveOptions(experimental_custom_gradients=False))
    converter = tf.lite.TFLiteConverter.from_saved_model(directory)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    try:
      model = converter.convert()
    except Exception as e:  # pylint: disable=broad-except
      first = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
      raise ExportError(
          f'TFLite conversion with built-in ops failed: {first}') from None
  bad = tflite_ops(model)
  if bad:
    raise ExportError(f'The TFLite model holds non-built-in ops {bad}; '
                      'allowed: TFLite built-in ops.')
  with open(path, 'wb') as f:
    f.write(model)


def probe_inputs(portable: PortablePolicy, batch_size: int = 16, seed: int = 0
                 ) -> Dict[str, np.ndarray]:
  """Random inputs of `portable.step`: vector observations N(0, 1),
  images uniform uint8, states N(0, 1) with one-hot actions for discrete
  spaces."""
  rng = np.random.default_rng(seed)
  spec = portable.spec
  inputs = {o.key: (rng.integers(0, 256, (batch_size,) + o.shape, np.uint8)
                    if o.is_image else rng.normal(
                        size=(batch_size,) + o.shape).astype(np.float32))
            for o in spec.observations}
  if portable.recurrent:
    state = rng.normal(size=(batch_size, portable.state_size))
    if spec.discrete:
      actions = rng.integers(spec.action_dim, size=batch_size)
      state[:, -spec.action_dim:] = np.eye(spec.action_dim)[actions]
    inputs['state'] = state.astype(np.float32)
  return inputs


def run_onnx(path: str, inputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
  """Outputs by name of the ONNX file at `path` run by onnxruntime."""
  import onnxruntime  # pylint: disable=import-outside-toplevel
  session = onnxruntime.InferenceSession(
      path, providers=['CPUExecutionProvider'])
  names = [output.name for output in session.get_outputs()]
  return dict(zip(names, session.run(names, inputs)))


def run_tflite(path: str, inputs: Dict[str, np.ndarray]
               ) -> Dict[str, np.ndarray]:
  """Outputs by name of the TFLite file at `path` (signature
  'serving_default') run by `tf.lite.Interpreter`."""
  interpreter = tf.lite.Interpreter(model_path=path)
  return interpreter.get_signature_runner('serving_default')(**inputs)


def check_agreement(portable: PortablePolicy, outputs: Dict[str, np.ndarray],
                    inputs: Dict[str, np.ndarray], what: str,
                    tolerance: float = 1e-4) -> None:
  """Raises ExportError unless `outputs` of `what` equal TensorFlow's
  `portable.call(inputs)`: discrete actions exactly, floats within
  `tolerance` (absolute and relative)."""
  expected = {k: v.numpy() for k, v in portable.call(inputs).items()}
  if set(outputs) != set(expected):
    raise ExportError(f'{what} has outputs {sorted(outputs)}; expected '
                      f'{sorted(expected)}.')
  for name, want in expected.items():
    got = np.asarray(outputs[name])
    if got.shape != want.shape or got.dtype != want.dtype:
      raise ExportError(
          f'{what} output {name!r} is {got.dtype} {list(got.shape)}; expected '
          f'{want.dtype} {list(want.shape)}.')
    exact = want.dtype.kind in 'iu'
    if (not np.array_equal(got, want) if exact else not np.allclose(
        got, want, rtol=tolerance, atol=tolerance)):
      error = np.max(np.abs(got.astype(np.float64) - want))
      raise ExportError(
          f'{what} output {name!r} differs from TensorFlow\'s by up to '
          f'{error:.3g} on probe inputs; allowed: '
          f'{"none" if exact else tolerance}.')


def write_portable(portable: PortablePolicy, paths: Dict[str, str],
                   verify_batch: Optional[int] = 16) -> None:
  """Writes the formats of `paths` ({'onnx' or 'tflite': file path}).

  Each file is checked after writing: it loads in its runtime
  (onnxruntime, `tf.lite.Interpreter`) and acts as TensorFlow does on
  `verify_batch` probe inputs (None: not checked).
  """
  frozen = freeze(portable)
  writers = {
      'onnx': lambda path: to_onnx(frozen, portable.input_signature, path),
      'tflite': lambda path: to_tflite(frozen, path)}
  runners = {'onnx': run_onnx, 'tflite': run_tflite}
  for format_, path in paths.items():
    writers[format_](path)
    if verify_batch:
      inputs = probe_inputs(portable, verify_batch)
      check_agreement(portable, runners[format_](path, inputs), inputs,
                      f'The {format_} file {os.path.basename(path)!r}')
