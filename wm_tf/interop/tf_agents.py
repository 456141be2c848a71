"""TF-Agents interop: our acting policy as a `TFPolicy`, gymnasium as a
`PyEnvironment`.

tf-agents is not a dependency of wm_tf: its last release (0.19) pins
tensorflow-probability~=0.23, gym<=0.23 and typing-extensions==4.5.0, which
cannot be resolved beside TF 2.21 and gymnasium 1.x. It imports and runs
when installed without its dependencies:

  pip install --no-deps tf-agents==0.19.0 gym==0.23.0 gym-notices gin-config

Usage, e.g. to drive an episode and save the policy for tf-agents users:

  run = restore_run(logdir)                       # wm_tf.runtime.export
  policy = WorldModelPolicy(run.serving)          # a TFPolicy
  env = GymnasiumEnvironment(run.config.env.id)   # a PyEnvironment
  PyDriver(env, PyTFEagerPolicy(policy), [], max_episodes=1).run(
      env.reset())
  PolicySaver(policy).save(path)

Time steps hold observations float32 [B, O]. Actions are what the
environment takes: int64 [B] indices for discrete action spaces, float32
[B, A] inside the bounds for continuous ones. The policy state is the
serving policy's (`wm_tf.runtime.export.FlatPolicyState`): () while the
representation is stateless, else float32 [B, S] (an RSSM's latent and
the previous action), reset to `initial_state` on FIRST time steps by
TFPolicy's automatic state reset.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import tensorflow as tf

_INSTALL = ('pip install --no-deps tf-agents==0.19.0 gym==0.23.0 gym-notices '
            'gin-config')
try:
  from tf_agents.environments import py_environment
  from tf_agents.policies import tf_policy
  from tf_agents.specs import tensor_spec
  from tf_agents.trajectories import policy_step
  from tf_agents.trajectories import time_step as ts
except ImportError as e:
  raise ImportError(
      f'wm_tf.interop.tf_agents needs tf-agents, an optional extra that '
      f'cannot be installed with its pinned dependencies beside wm_tf\'s; '
      f'install it with: {_INSTALL} ({e})') from e

from wm_tf.runtime.environments import EnvSpec, make_env, spec_from_spaces
from wm_tf.runtime.export import ServingPolicy
from wm_tf.runtime.observation_spaces import ObservationConverter
from wm_tf.specs import OBSERVATION


def _flat(spec: EnvSpec) -> bool:
  """An env whose observation is the single key 'observation'."""
  return spec.observation_keys == (OBSERVATION,)


def observation_spec(spec: EnvSpec):
  """One observation: float32 [O] (or uint8 [H, W, C]) for an env of the
  single key 'observation', else {key: spec of that key}."""
  specs = {o.key: tensor_spec.TensorSpec(o.shape, o.dtype, name=o.key)
           for o in spec.observations}
  return specs[OBSERVATION] if _flat(spec) else specs


def action_spec(spec: EnvSpec) -> tensor_spec.BoundedTensorSpec:
  """One environment action: int64 index in [0, A) or float32 [A] in bounds."""
  if spec.discrete:
    return tensor_spec.BoundedTensorSpec(
        [], tf.int64, minimum=0, maximum=spec.action_dim - 1, name='action')
  return tensor_spec.BoundedTensorSpec(
      [spec.action_dim], tf.float32, minimum=np.array(spec.low, np.float32),
      maximum=np.array(spec.high, np.float32), name='action')


def policy_state_spec(state_size: int):
  """() for a stateless policy, else one state float32 [S]."""
  if state_size == 0:
    return ()
  return tensor_spec.TensorSpec([state_size], tf.float32, name='state')


def stateless_seed(seed) -> tf.Tensor:
  """A stateless seed int32 [2] from tf-agents' seed argument.

  An int (or int scalar tensor) always gives the same seed; a [2] tensor is
  used as it is; None draws a fresh one per call.
  """
  if seed is None:
    return tf.random.uniform([2], maxval=tf.int32.max, dtype=tf.int32)
  seed = tf.convert_to_tensor(seed)
  if seed.shape.rank == 0:
    return tf.stack([tf.cast(seed, tf.int32), tf.constant(0, tf.int32)])
  return tf.cast(seed, tf.int32)


class WorldModelPolicy(tf_policy.TFPolicy):
  """A `ServingPolicy` behind the TF-Agents policy interface.

  Args:
    serving: the `wm_tf.runtime.export.ServingPolicy` to act with; its
      variables are this policy's (so `PolicySaver` saves them).
    deterministic: act with the actor's deterministic action (the default,
      as in evaluation) or sample it. Samples with the same `seed` given
      to `action` are the same (see `stateless_seed`); without a seed each
      call draws a fresh one.
    name: the module name.
  """

  def __init__(self, serving: ServingPolicy, deterministic: bool = True,
               name: str = 'world_model_policy'):
    spec = serving.spec
    super().__init__(
        ts.time_step_spec(observation_spec(spec)), action_spec(spec),
        policy_state_spec=policy_state_spec(serving.state_size), name=name)
    self._serving = serving
    self._deterministic = deterministic

  def _get_initial_state(self, batch_size):
    if self._serving.state_size == 0:
      return ()
    return self._serving.initial_state(
        tf.cast(batch_size, tf.int32))['state']

  def _action(self, time_step, policy_state, seed: Optional[int] = None):
    spec = self._serving.spec
    observation = time_step.observation
    if _flat(spec):
      observation = {OBSERVATION: observation}
    observation = {o.key: tf.cast(observation[o.key], o.dtype)
                   for o in spec.observations}
    if self._serving.state_size == 0:
      batch = tf.shape(time_step.step_type)[0]
      state = tf.zeros([batch, 0], tf.float32)
    else:
      state = policy_state
    outputs = self._serving.act(
        observation, state, tf.constant(self._deterministic),
        stateless_seed(seed))
    next_state = (() if self._serving.state_size == 0
                  else outputs['next_state'])
    return policy_step.PolicyStep(outputs['action'], next_state, ())


class GymnasiumEnvironment(py_environment.PyEnvironment):
  """A gymnasium environment as a TF-Agents `PyEnvironment`.

  tf-agents' own suites load the old `gym` package; this wraps gymnasium
  (1.x) directly. Specs are those of `WorldModelPolicy` for the same
  `EnvSpec`. Terminated episodes end with discount 0, truncated ones with
  discount 1; the step after a LAST step resets (the base class does it).

  Args:
    env_id: a gymnasium id wm_tf can handle (`wm_tf.runtime.environments`).
    seed: seeds the first reset (later resets continue its random stream).
    max_episode_steps: overrides the registered time limit.
  """

  def __init__(self, env_id: str, seed: Optional[int] = None,
               max_episode_steps: Optional[int] = None):
    super().__init__(handle_auto_reset=True)
    self._env = make_env(env_id, max_episode_steps)
    self.env_spec = spec_from_spaces(env_id, self._env.observation_space,
                                     self._env.action_space)
    self._seed = seed
    self._convert = ObservationConverter(self._env.observation_space, env_id)
    self._observation_spec = tensor_spec.to_array_spec(
        observation_spec(self.env_spec))
    self._action_spec = tensor_spec.to_array_spec(action_spec(self.env_spec))

  def observation_spec(self):
    return self._observation_spec

  def action_spec(self):
    return self._action_spec

  def _reset(self):
    observation, _ = self._env.reset(seed=self._seed)
    self._seed = None
    return ts.restart(self._observation(observation))

  def _observation(self, observation):
    observation = self._convert(observation)
    return (observation[OBSERVATION] if _flat(self.env_spec)
            else observation)

  def _step(self, action):
    action = np.asarray(action)
    if self.env_spec.discrete:
      action = int(action)
    observation, reward, terminated, truncated, _ = self._env.step(action)
    observation = self._observation(observation)
    reward = np.float32(reward)
    if terminated:
      return ts.termination(observation, reward)
    if truncated:
      return ts.truncation(observation, reward)
    return ts.transition(observation, reward)

  def close(self):
    self._env.close()
