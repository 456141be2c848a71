"""Export a trained policy as a SavedModel that TensorFlow alone can serve.

A run directory (see `wm_tf.runtime.trainer`) holds `config.yaml` and
`checkpoints/`. `export_run` rebuilds the agent from the config, restores
the newest checkpoint and writes a SavedModel in TF Serving's layout,
`output/<version>/`, with tensor-only signatures (TFP distributions do not
survive a signature):

  serving_default, action (the same function under two names):
    one input per observation key, under its name (`wm_tf.specs`: a
    vector env's is observation float32 [B, O]; images uint8
    [B, H, W, C]), state float32 [B, S], deterministic bool [], seed
    int32 [2]
      -> action: int64 [B] (the env's action index; discrete) or float32
         [B, A] inside the action bounds (continuous);
         action_one_hot: float32 [B, A] (discrete only, the agent's form);
         next_state: float32 [B, S].
  initial_state:
    batch_size int32 [] -> state float32 [batch_size, S].
  metadata:
    () -> state_size, action_dim int32 []; discrete bool [];
         observation_keys string [K]; action_low, action_high float32 [A]
         (continuous only); observation_dim int32 [] (an env of one
         vector key only); env_config string [] (the run's `env` config
         section as JSON: id, episode limit, pixels, action repeat and the
         family's settings, so the policy can be evaluated on the
         environment it was trained on without its run directory).

`seed` is a stateless seed: the same seed and inputs give the same sampled
action; with `deterministic` true it is ignored (but must be fed). The
caller carries `state` from one step to the next, starting from
`initial_state` and resetting an environment's row when its episode starts.

The state is the acting policy's (`wm_tf.agent.policy.Policy`) flattened
into one row per environment (`FlatPolicyState`): with a recurrent
representation (an RSSM) it is concat(latent [B, D], previous action
[B, A]), S = D + A, so the exported policy acts on the episode's history;
a stateless representation sees one observation at a time and S = 0.
`initial_state` is the policy's initial state, from which a step acts as
on an episode's first observation: resetting a row starts an episode.
The function acts as the in-process policy does (the actor, or the planner
in imagination.mode 'mpc', and the uncertainty fallback), traced without
XLA: deterministic actions are the same, and sampled ones too when the
policy runs without XLA (run.jit=false; XLA draws other random numbers).

    python -m launch.export --logdir=RUN --output=DIR [--version=N]
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from typing import Dict, List, Optional, Sequence

import keras
import tensorflow as tf

from wm_tf import config as config_lib
from wm_tf.agent.builder import Agent
from wm_tf.runtime import checkpoints as checkpoints_lib
from wm_tf.runtime import export_formats
from wm_tf.runtime.environments import EnvSpec


class ExportError(ValueError):
  """A run that cannot be exported, or an output that cannot be written."""


# The inputs of the action signature besides the observation keys.
_INPUTS = ('state', 'deterministic', 'seed')


def _single_vector(spec: EnvSpec) -> bool:
  return len(spec.observations) == 1 and not spec.observations[0].is_image


class FlatPolicyState:
  """The policy's state dict as one float32 tensor [B, S].

  Recurrent: S = D + A, each row concat(latent [D], previous action [A]).
  Stateless: S = 0; the policy's own state is rebuilt from its initial
  state at every step (it ignores it anyway).

  Args:
    policy: the `Policy` whose state this flattens.
  """

  def __init__(self, policy):
    self.policy = policy
    self.latent_dim = int(policy.world_model.latent_dim)
    self.size = (self.latent_dim + policy.action_dim if policy.recurrent
                 else 0)

  def flatten(self, state: Dict[str, tf.Tensor]) -> tf.Tensor:
    if self.size == 0:
      return tf.zeros([tf.shape(state['latent'])[0], 0], tf.float32)
    return tf.concat([state['latent'], state['action']], -1)

  def unflatten(self, flat: tf.Tensor) -> Dict[str, tf.Tensor]:
    if self.size == 0:
      return self.policy.initial_state(tf.shape(flat)[0])
    return {'latent': flat[:, :self.latent_dim],
            'action': flat[:, self.latent_dim:]}


class _Untracked:
  """Attributes that a `tf.Module` does not track, save or checkpoint."""

  def __init__(self, **attributes):
    self.__dict__.update(attributes)


class ServingPolicy(tf.Module):
  """The acting policy with tensor-only, fixed-signature functions.

  Wraps the agent's `Policy` (its `step`, traced without XLA so the
  SavedModel runs on any TensorFlow build), and holds the variables acting
  reads and the `tf.function`s the SavedModel exports: `action`,
  `initial_state` and `metadata` (see the module docstring for shapes).
  `state_size` is S, a Python int.

  Args:
    policy: the agent's `wm_tf.agent.policy.Policy`.
    spec: the environment's `EnvSpec`.

  Example:
    serving = ServingPolicy(agent.policy, spec)
    state = serving.initial_state(tf.constant(4))['state']
    out = serving.act(obs, state, tf.constant(True), tf.constant([0, 0]))
    state = out['next_state']
  """

  def __init__(self, policy, spec: EnvSpec,
               env: Optional[config_lib.EnvConfig] = None,
               name: str = 'serving_policy'):
    super().__init__(name=name)
    # Recorded in `metadata` when given; `policy_from_saved_model` reads it.
    self._env_json = (None if env is None else
                      json.dumps(config_lib.to_dict(env), sort_keys=True,
                                 default=str))
    # The Keras models stay out of the SavedModel's object graph: Keras 3
    # gives every model a default signature traced from its `call`, which
    # fails for models of several inputs (the dynamics). The functions
    # need the variables alone; `serving_variables` tracks those.
    self._models = _Untracked(policy=policy)
    self.spec = spec
    self._state = FlatPolicyState(policy)
    self.state_size = int(self._state.size)
    reserved = [k for k in spec.observation_keys if k in _INPUTS]
    if reserved:
      raise ExportError(f'Observation keys {reserved} are names of other '
                        f'inputs of the exported policy ({_INPUTS}).')
    keys = spec.observation_keys
    # One positional input per key, so each is a named signature input.
    self.action = tf.function(lambda *args: self._action(
        dict(zip(keys, args[:len(keys)])), *args[len(keys):]),
                              input_signature=[
        *[tf.TensorSpec((None,) + o.shape, o.dtype, name=o.key)
          for o in spec.observations],
        tf.TensorSpec([None, self.state_size], tf.float32, name='state'),
        tf.TensorSpec([], tf.bool, name='deterministic'),
        tf.TensorSpec([2], tf.int32, name='seed'),
    ], autograph=False)
    self.initial_state = tf.function(self._initial_state, input_signature=[
        tf.TensorSpec([], tf.int32, name='batch_size')], autograph=False)
    self.metadata = tf.function(self._metadata, input_signature=[],
                                autograph=False)
    # Tracing once finds exactly the variables acting reads (the encoder,
    # representation and actor, and what a planner or uncertainty check
    # uses; not the decoder).
    used = {}
    for function in self.signatures().values():
      for v in function.variables:
        used[id(v)] = v
    self.serving_variables = list(used.values())

  @property
  def policy(self):
    """The wrapped `wm_tf.agent.policy.Policy`."""
    return self._models.policy

  def act(self, observation: Dict[str, tf.Tensor], state, deterministic,
          seed) -> Dict[str, tf.Tensor]:
    """`action` with the observation as a dict {key: [B, *shape]}."""
    return self.action(*[observation[k] for k in self.spec.observation_keys],
                       state, deterministic, seed)

  def _check_inputs(self, observation, state):
    """Asserts that every observation key [B, *shape] and state [B, S]
    have these shapes, one B, and finite values.

    A loaded SavedModel's signatures do not check shapes against their
    specs, so every check runs in the graph. The shape checks compare
    sizes as well: the rank of a tensor with a known static rank is folded
    to a constant, whatever is fed.
    """
    s = self.state_size
    inputs = [(o.key, observation[o.key], list(o.shape), o.dtype)
              for o in self.spec.observations]
    inputs.append(('state', state, [s], 'float32'))
    batch = tf.shape(inputs[0][1])[0]
    checks = []
    for name, tensor, shape, dtype in inputs:
      got = tf.shape(tensor)
      size = 1
      for n in shape:
        size *= n
      fits = tf.logical_and(
          tf.reduce_all(tf.equal(got[1:], shape)),
          tf.equal(tf.size(tensor), got[0] * size))
      checks.append(tf.debugging.Assert(fits, [
          f'Input {name} must be {dtype} [B, {", ".join(map(str, shape))}]; '
          'got shape', got]))
      checks.append(tf.debugging.assert_equal(got[0], batch, message=(
          f'Input {name} must have the batch size B of the other inputs '
          f'({", ".join(i[0] for i in inputs)}); the batch sizes differ.')))
    with tf.control_dependencies(checks):
      checks = [tf.debugging.assert_all_finite(tensor, message=(
          f'Input {name} {dtype} [B, {", ".join(map(str, shape))}] must be '
          'finite; it holds NaN or inf.'))
                for name, tensor, shape, dtype in inputs
                if dtype == 'float32' and (name != 'state' or s)]
    with tf.control_dependencies(checks):
      return ({k: tf.identity(v) for k, v in observation.items()},
              tf.identity(state))

  def _action(self, observation, state, deterministic, seed
              ) -> Dict[str, tf.Tensor]:
    observation, state = self._check_inputs(observation, state)
    # A reset row holds the initial state, from which a step is a first
    # step: is_first is not needed.
    is_first = tf.zeros([tf.shape(state)[0]], tf.bool)
    agent_action, next_state, _ = self._models.policy.step(
        observation, is_first, self._state.unflatten(state), seed,
        deterministic)
    if self.spec.discrete:
      # Straight-through samples are one_hot + p - p: rebuild an exact one.
      index = tf.argmax(agent_action, -1, output_type=tf.int64)
      outputs = {'action': index, 'action_one_hot': tf.one_hot(
          index, self.spec.action_dim, dtype=tf.float32)}
    else:
      # tanh keeps samples inside; the clip guards float rounding at the edge.
      outputs = {'action': tf.clip_by_value(
          agent_action, self.spec.low, self.spec.high)}
    # The policy's own action goes forward, as in-process acting does.
    outputs['next_state'] = self._state.flatten(next_state)
    return outputs

  def _initial_state(self, batch_size) -> Dict[str, tf.Tensor]:
    check = tf.debugging.assert_non_negative(batch_size, message=(
        'Input batch_size int32 [] must be >= 0.'))
    with tf.control_dependencies([check]):
      batch_size = tf.identity(batch_size)
    return {'state': self._state.flatten(
        self._models.policy.initial_state(batch_size))}

  def _metadata(self) -> Dict[str, tf.Tensor]:
    out = {
        'state_size': tf.constant(self.state_size, tf.int32),
        'observation_keys': tf.constant(self.spec.observation_keys),
        'action_dim': tf.constant(self.spec.action_dim, tf.int32),
        'discrete': tf.constant(self.spec.discrete),
    }
    if _single_vector(self.spec):
      out['observation_dim'] = tf.constant(self.spec.observation_dim,
                                           tf.int32)
    if not self.spec.discrete:
      out['action_low'] = tf.constant(self.spec.low, tf.float32)
      out['action_high'] = tf.constant(self.spec.high, tf.float32)
    if self._env_json is not None:
      out['env_config'] = tf.constant(self._env_json)
    return out

  def signatures(self) -> Dict[str, tf.types.experimental.ConcreteFunction]:
    """The SavedModel signatures, keyed by name."""
    action = self.action.get_concrete_function()
    return {
        tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY: action,
        'action': action,
        'initial_state': self.initial_state.get_concrete_function(),
        'metadata': self.metadata.get_concrete_function(),
    }


@dataclasses.dataclass
class RestoredRun:
  """A run rebuilt from its directory, with its newest checkpoint loaded."""
  config: config_lib.Config
  spec: EnvSpec
  agent: Agent
  serving: ServingPolicy
  checkpoint_path: str


def unreachable_variables(root: tf.train.Checkpoint,
                          variables: Sequence[tf.Variable]
                          ) -> List[tf.Variable]:
  """The `variables` that saving or restoring `root` never reaches.

  Keras 3 variables wrap the `tf.Variable` that traced functions read;
  either counts as reached.
  """
  reachable = set()
  for trackable in tf.train.TrackableView(root).descendants():
    reachable.add(id(trackable))
    if isinstance(trackable, keras.Variable):
      reachable.add(id(trackable.value))
  return [v for v in variables if id(v) not in reachable]


def restore_run(logdir: str) -> RestoredRun:
  """Rebuilds the agent of a run and restores its newest usable checkpoint
  (`wm_tf.runtime.checkpoints.restore_agent`: damaged ones are skipped).

  Every variable the serving functions read must be reachable from the
  checkpointed objects (else it would keep its initial value unnoticed).

  Raises:
    ExportError: the directory, its config or its checkpoints are missing
      or do not fit together; the message says which.
  """
  try:
    run = checkpoints_lib.restore_agent(logdir)
  except checkpoints_lib.RunDirectoryError as e:
    raise ExportError(str(e)) from None
  serving = ServingPolicy(run.agent.policy, run.spec, env=run.config.env)
  root = tf.train.Checkpoint(
      **checkpoints_lib.agent_checkpoint_objects(run.agent))
  missing = [v.name for v in unreachable_variables(
      root, serving.serving_variables)]
  if missing:
    raise ExportError(
        f'Variables {missing} of the policy are not part of the trainer\'s '
        f'checkpoint object graph, so {run.restored.path!r} cannot hold '
        'them.')
  return RestoredRun(run.config, run.spec, run.agent, serving,
                     run.restored.path)


def next_version(output: str) -> int:
  """1 more than the largest version in `output` (or 1): integer-named
  directories and N.onnx / N.tflite files (`export_formats.taken_versions`).
  """
  return max(export_formats.taken_versions(output), default=0) + 1


def format_paths(output: str, version: Optional[int] = None,
                 formats: Sequence[str] = export_formats.DEFAULT_FORMATS
                 ) -> Dict[str, str]:
  """{format: path} of `version` in `output` (None: the next one), checked
  to be free (see `wm_tf.runtime.export_formats` for the layout)."""
  if os.path.exists(output) and not os.path.isdir(output):
    raise ExportError(f'Output {output!r} exists and is not a directory.')
  try:
    formats = export_formats.check_formats(formats)
  except ValueError as e:
    raise ExportError(str(e)) from None
  if version is None:
    version = next_version(output)
  if version < 1:
    raise ExportError(f'Version must be an integer >= 1, got {version}.')
  paths = {f: export_formats.format_path(output, version, f) for f in formats}
  for path in paths.values():
    if os.path.exists(path):
      raise ExportError(
          f'{path!r} already exists; choose another --version or omit it to '
          f'use the next free one ({next_version(output)}).')
  return paths


def version_path(output: str, version: Optional[int] = None) -> str:
  """`output/<version>/`, checked to be free (version None: the next one)."""
  return format_paths(output, version)['saved_model']


def _partial_path(path: str) -> str:
  """Where `path` is written before it is renamed into place."""
  return os.path.join(os.path.dirname(path),
                      f'.partial-{os.path.basename(path)}-{os.getpid()}')


def _remove(path: str) -> None:
  if os.path.isdir(path):
    shutil.rmtree(path, ignore_errors=True)
  elif os.path.exists(path):
    os.remove(path)


def save_formats(serving: ServingPolicy, output: str,
                 version: Optional[int] = None,
                 formats: Sequence[str] = export_formats.DEFAULT_FORMATS
                 ) -> Dict[str, str]:
  """Writes `serving` in `formats` as `version` of `output`; returns
  {format: path}.

  Every file is written beside its target and renamed into place, the
  SavedModel last, so a server watching `output` never sees a half-written
  version, nor a version whose ONNX or TFLite file is still missing.

  Raises:
    ExportError: a path is taken, or a format cannot be written (the
      policy plans, a converter or its check fails).
  """
  paths = format_paths(output, version, formats)
  portable_paths = {f: p for f, p in paths.items() if f != 'saved_model'}
  if portable_paths:
    # Imported here: tf2onnx and onnxruntime are an optional extra.
    from wm_tf.runtime import portable_export  # pylint: disable=import-outside-toplevel
    portable = portable_export.PortablePolicy(serving.policy, serving.spec)
  os.makedirs(output, exist_ok=True)
  partials = {f: _partial_path(p) for f, p in paths.items()}
  try:
    if portable_paths:
      portable_export.write_portable(
          portable, {f: partials[f] for f in portable_paths})
    if 'saved_model' in paths:
      tf.saved_model.save(serving, partials['saved_model'],
                          signatures=serving.signatures())
    for format_ in sorted(paths, key=lambda f: f == 'saved_model'):
      os.rename(partials[format_], paths[format_])
  finally:
    for partial in partials.values():
      _remove(partial)
  return paths


def save_serving_policy(serving: ServingPolicy, output: str,
                        version: Optional[int] = None) -> str:
  """Writes `serving` to `output/<version>/` and returns that path.

  The SavedModel is written beside the target and renamed into place, so
  a server watching `output` never sees a half-written version.
  """
  return save_formats(serving, output, version)['saved_model']


def export_run(logdir: str, output: str, version: Optional[int] = None
               ) -> str:
  """Restores the newest checkpoint of `logdir` and exports its policy.

  Args:
    logdir: a run directory with config.yaml and checkpoints/.
    output: the model base directory; the SavedModel goes to
      `output/<version>/`.
    version: the version number; None for 1 more than the largest present.

  Returns:
    The path of the written SavedModel.

  Raises:
    ExportError: with one message saying what is wrong.
  """
  return export_run_formats(logdir, output, version)['saved_model']


def export_run_formats(logdir: str, output: str,
                       version: Optional[int] = None,
                       formats: Sequence[str] = (
                           export_formats.DEFAULT_FORMATS)
                       ) -> Dict[str, str]:
  """`export_run` in several formats (`wm_tf.runtime.export_formats`).

  Returns:
    {format: path written}, e.g. {'saved_model': 'DIR/3',
    'onnx': 'DIR/3.onnx', 'tflite': 'DIR/3.tflite'}.

  Raises:
    ExportError: with one message saying what is wrong.
  """
  format_paths(output, version, formats)  # fail before the slow restore
  return save_formats(restore_run(logdir).serving, output, version, formats)
