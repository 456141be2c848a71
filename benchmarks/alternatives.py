r"""Design alternatives, one change at a time from each environment's config.

  python -m benchmarks.alternatives                      # everything (hours)
  python -m benchmarks.alternatives --timing_only        # ms per step only
  python -m benchmarks.alternatives --only=baseline,dyna,ensemble_mean \
      --envs=cartpole --seeds=2 --budget=5000 --parallel=2
  python -m benchmarks.alternatives \
      --table_from=results/a_cartpole.json,results/a_pendulum.json
  python -m benchmarks.alternatives --envs=cartpole --existing_only \
      --timing_from=results/alternatives_timing.json   # runs + timings

Every alternative of every family (`ALTERNATIVES`: representation learners,
dynamics models, return estimators, imagination modes, symlog, warmup
schedules, optimizer layouts, world-model targets, acting under
uncertainty, actor gradients) is applied as `--set` overrides to
configs/<env>.yaml, the baseline being the file itself. For each
alternative and environment:

  * timing (cheap, skipped by --notiming): the agent is built in a timing
    worker process from the alternative's config, one random batch of the
    config's shape [replay.batch_size, replay.sequence_length] is made, and
    the steady-state train step (the warmup schedule's `update` after the
    warmup has ended) is compiled and called --timing_steps times; the
    median ms is reported, with quartiles, extremes and the load average as
    the noise. The acting step (`Policy.act` on num_envs
    observations, what the training loop calls) is timed the same way,
    since 'mpc' and the uncertainty fallback cost nothing in training and
    everything in acting. Replay sampling is not included. With --paired
    (default) each worker keeps the baseline's agent compiled and times
    every alternative interleaved with it; the table shows the median ms
    and, in brackets, the median ratio to the neighbouring baseline calls
    (x1.00 = as fast as the baseline), which shifts of the machine's load
    disturb far less than the ms. The baseline is timed again at the end
    ('baseline (repeat)'): its paired ratio should be near 1.
  * learning (skipped by --timing_only): --seeds runs of `launch.train` in
    subprocesses (--parallel at once), each --budget env steps; from
    logdir/evaluations.csv come the env steps at which the eval return
    first reached the threshold (CartPole 475, Pendulum -200; null if
    never) and the final eval return. Runs live in
    <output>/runs/<env>-<budget>/<alternative>-seed<k>. Runs go seed-major
    (every alternative's seed 0 first), so a benchmark stopped early leaves
    the same seeds for every row. Rerunning reuses, without starting them,
    the runs whose evaluations reached the budget and resumes the others;
    --existing_only starts nothing and reports the completed runs.

A combination the config refuses (a ConfigError while validating or
building, e.g. an ensemble that samples a member when imagination does not
sample) is reported as 'refused' with the error message, and an
alternative that equals the environment's baseline (actor.gradient=reinforce
on CartPole) as 'same_as_baseline', and one whose config equals an
earlier alternative's as 'duplicate'; none of these is run.

Writes <output>/<name>.json (everything, per seed and per timed step
statistics) and <output>/<name>.csv (one row per alternative and
environment), where <name> is 'alternatives', or 'alternatives_timing' with
--timing_only, and prints a markdown table: family | alternative | when to
use it | ms/train step | ms/act step | per environment: steps to the
threshold and final return. Both are medians over seeds; a seed that never
reaches the threshold counts as infinitely many steps ('–' if the median
is), and '(k/n)' says how many of the n seeds reached it.

Timing workers are subprocesses that each build many agents in turn (a
crash, such as an XLA compiler abort, loses one alternative, not the run).
A worker times at most --timing_tasks_per_worker alternatives, then a new
one takes the rest: every compiled program keeps its memory mappings, and
one worker timing all 31 CartPole alternatives ran out of them
(vm.max_map_count, 65,530 here; LLVM then fails with 'Cannot allocate
memory') when it compiled the Pendulum baseline.
With --parallel > 1 several workers share the cores, which inflates every
ms figure: use --parallel=1 for numbers to compare with other machines.
"""

from __future__ import annotations

import csv
import dataclasses
import gc
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

from absl import app, flags

from benchmarks.training_runs import (ROOT, error_line, median,
                                     read_evaluations, run_completed,
                                     run_jobs, steps_to_threshold,
                                     threads_per_run, train_command)
from wm_tf import config as config_lib
from wm_tf.config import Config, ConfigError

flags.DEFINE_list('envs', ['cartpole', 'pendulum'],
                  'Environments: configs/<name>.yaml (thresholds known for '
                  'cartpole and pendulum).')
flags.DEFINE_integer('seeds', 3, 'Learning runs per alternative and env '
                     '(seeds 0 .. seeds-1).')
flags.DEFINE_integer('budget', None, 'Env steps per learning run (default: '
                     "the config's run.total_env_steps).")
flags.DEFINE_bool('existing_only', False, 'Start no learning run: report '
                  'the runs already completed in <output>/runs (the seeds '
                  'not run are left out of the medians).')
flags.DEFINE_list('only', [], 'Alternatives to run (names from the table; '
                  'default all).')
flags.DEFINE_bool('timing_only', False, 'Time the train step only; skip the '
                  'learning runs.')
flags.DEFINE_bool('timing', True, 'Time the train and act steps (before the '
                  'learning runs, so they do not disturb the timing).')
flags.DEFINE_integer('parallel', 1, 'Subprocesses at once (learning runs and '
                     'timing workers).')
flags.DEFINE_integer('threads', None, "TensorFlow's intra- and inter-op "
                     'threads per learning run (default: the cores / '
                     '--parallel, at least 1).')
flags.DEFINE_string('output', 'benchmarks/results', 'Output directory.')
flags.DEFINE_string('name', None, "Output file stem (default 'alternatives', "
                    "or 'alternatives_timing' with --timing_only).")
flags.DEFINE_integer('timing_steps', 20, 'Timed train (and act) steps per '
                     'alternative, after the compiling call and '
                     '--timing_warmup_steps untimed calls.')
flags.DEFINE_integer('timing_warmup_steps', 2, 'Untimed calls (of the '
                     'alternative and of the paired baseline) after the '
                     'compiling one.')
flags.DEFINE_bool('timing_jit', None, "Compile the timed steps with XLA "
                  "(default: the config's run.jit).")
flags.DEFINE_bool('paired', True, 'Time each alternative interleaved with '
                  'the baseline (kept compiled in the worker) and report the '
                  'median ratio of neighbouring calls, which load drift '
                  'disturbs far less than the ms.')
flags.DEFINE_bool('repeat_baseline', True, 'Time the baseline again at the '
                  'end of each environment, to show drift of the load.')
flags.DEFINE_multi_string('set', [], 'Extra key=value overrides for every '
                          'alternative, baseline included.')
flags.DEFINE_list('table_from', [], 'Run nothing: print the markdown table '
                  'of these report JSONs (e.g. one per environment), merged '
                  'into one row per alternative.')
flags.DEFINE_integer('timing_tasks_per_worker', 12, 'Alternatives one '
                     'timing worker process times before a new one takes '
                     'over (see the module doc).')
flags.DEFINE_list('timing_from', [], 'Time nothing: take the timings of '
                  "--envs from these earlier reports' JSON (e.g. --timing_only "
                  'runs; a later report replaces what an earlier one has for '
                  'the same alternative), to report them beside learning '
                  'runs made apart from them.')
flags.DEFINE_string('worker', None, 'Internal: run the timing tasks of this '
                    'JSON file.')
FLAGS = flags.FLAGS


@dataclasses.dataclass(frozen=True)
class EnvInfo:
  label: str  # as shown in the table
  threshold: Optional[float]  # eval return counted as solved


ENVS = {
    'cartpole': EnvInfo('CartPole', 475.0),
    'pendulum': EnvInfo('Pendulum', -200.0),
}


def env_info(env: str) -> EnvInfo:
  return ENVS.get(env, EnvInfo(env, None))


def config_path(env: str) -> str:
  return os.path.join(ROOT, 'configs', env + '.yaml')


# ----------------------------------------------------------------------------
# The alternatives.
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Alternative:
  """One design choice: overrides of the env's config and when it fits.

  `overrides(base)` gives the `key.path=value` strings from the env's base
  config, so a choice that needs a value tied to the base (the phases of a
  phased warmup) can follow it.
  """
  family: str
  name: str
  when: str
  overrides: Callable[[Config], List[str]]


def _fixed(*overrides: str) -> Callable[[Config], List[str]]:
  return lambda base: list(overrides)


def _phased(base: Config) -> List[str]:
  # World model alone for the base warmup's length (as 'simple'), then the
  # critic updated twice per actor update for as long again, so it does not
  # lag the returns while the actor starts; then one update of each.
  end = max(base.warmup.steps, base.run.prefill_steps, 1)
  phases = (f'[{{end_step: {end}, world_model_updates: 1}}, '
            f'{{end_step: {2 * end}, world_model_updates: 1, '
            'actor_updates: 1, critic_updates: 2}]')
  return ['warmup.type=phased', f'warmup.phases={phases}']


def _latent_is_encoder(base: Config) -> List[str]:
  return ['representation_learner.type=none',
          f'representation_learner.latent_dim={base.encoder.units}']


ALTERNATIVES = (
    Alternative('baseline', 'baseline',
                "the env's tuned config (configs/<env>.yaml)", _fixed()),
    # representation_learner.type (base: 'mlp', a tanh bottleneck)
    Alternative('representation_learner', 'none',
                'low-dimensional, fully observed vectors: the encoder '
                'features are the state',
                _fixed('representation_learner.type=none')),
    Alternative('representation_learner', 'none_encoder_latent',
                "'none' with latent_dim = encoder.units (the only size "
                "'none' allows)", _latent_is_encoder),
    Alternative('representation_learner', 'mlp',
                'a deterministic tanh bottleneck on the encoder features, '
                'trained only through the heads and dynamics',
                _fixed('representation_learner.type=mlp')),
    Alternative('representation_learner', 'mlp_autoencoder',
                'the latent must keep all of the observation (it '
                'reconstructs its own input)',
                _fixed('representation_learner.type=mlp_autoencoder')),
    Alternative('representation_learner', 'vae',
                'a smooth, regularised latent (KL to N(0, 1), beta 0.01), '
                'stochastic states', _fixed('representation_learner.type=vae')),
    Alternative('representation_learner', 'vae_beta_1',
                "'vae' with beta 1: the KL, summed over the latent "
                'dimensions, outweighs the likelihood and the posterior '
                'collapses onto the prior',
                _fixed('representation_learner.type=vae',
                       'representation_learner.beta=1.0')),
    Alternative('representation_learner', 'contrastive',
                'observations full of detail the dynamics do not need (no '
                'reconstruction)',
                _fixed('representation_learner.type=contrastive')),
    Alternative('representation_learner', 'vq',
                'discrete structure in the state (modes, contacts)',
                _fixed('representation_learner.type=vq')),
    Alternative('representation_learner', 'rssm',
                'partial observability: the state needs memory (GRU path)',
                _fixed('representation_learner.type=rssm')),
    Alternative('representation_learner', 'rssm_categorical',
                "'rssm' with DreamerV2/V3's discrete latent: one-hot "
                'categoricals (multi-modal state), straight-through '
                'samples, KL scales and free bits on both sides',
                _fixed('representation_learner.type=rssm',
                       'representation_learner.latent=categorical')),
    # dynamics.type (base: 'gaussian' with a learned std)
    Alternative('dynamics', 'deterministic',
                'deterministic environments; the cheapest model',
                _fixed('dynamics.type=deterministic')),
    Alternative('dynamics', 'ensemble',
                'when the model exploits its errors / to measure '
                '(epistemic) uncertainty', _fixed('dynamics.type=ensemble')),
    Alternative('dynamics', 'ensemble_mean',
                "'ensemble' imagining with the member mean (the base "
                'configs do not sample in imagination)',
                _fixed('dynamics.type=ensemble',
                       'dynamics.ensemble_imagination=mean')),
    Alternative('dynamics', 'mixture', 'multi-modal transitions',
                _fixed('dynamics.type=mixture')),
    Alternative('dynamics', 'fixed_std',
                'a plain regression model (NLL = MSE); no aleatoric std',
                _fixed('dynamics.std=fixed')),
    # returns.type (base: 'lambda')
    Alternative('returns', 'monte_carlo',
                'bias-variance of targets: no bootstrap (unbiased in the '
                'model, high variance), for an untrusted critic',
                _fixed('returns.type=monte_carlo')),
    Alternative('returns', 'n_step',
                'bias-variance of targets: bootstrap after n steps',
                _fixed('returns.type=n_step')),
    Alternative('returns', 'gae',
                'bias-variance of targets: lambda-weighted advantages (as '
                'PPO)', _fixed('returns.type=gae')),
    # imagination (base: 'backprop', no symlog, mean dynamics)
    Alternative('imagination', 'dyna',
                'the model exploits its errors: real data anchors actor and '
                'critic', _fixed('imagination.mode=dyna')),
    Alternative('imagination', 'dyna_positive',
                "'dyna' whose real actor term raises only the replayed "
                'actions better than expected (the default; needed for '
                'continuous actions)',
                _fixed('imagination.mode=dyna',
                       'imagination.real_actor_advantage=positive')),
    Alternative('imagination', 'mpc',
                'no actor needed / short-horizon control with bounded '
                'actions', _fixed('imagination.mode=mpc')),
    Alternative('imagination', 'mpc_random_shooting',
                "'mpc' for few actions or short horizons: no CEM refits",
                _fixed('imagination.mode=mpc', 'mpc.method=random_shooting')),
    Alternative('imagination', 'symlog',
                'rewards (or observations) of large or varied scale',
                _fixed('imagination.symlog=true')),
    Alternative('imagination', 'sample_dynamics',
                'stochastic environments: imagination samples next states',
                _fixed('imagination.sample_dynamics=true')),
    # critic.distribution and heads.reward.distribution (base: 'normal')
    Alternative('critic', 'twohot',
                'returns or rewards of large or unknown scale: a critic and '
                'reward head whose gradient does not grow with it',
                _fixed('critic.distribution=twohot',
                       'heads.reward.distribution=twohot')),
    # warmup.type (base: 'simple', world model only for warmup.steps)
    Alternative('warmup', 'gradual',
                'the critic needs real returns before imagined ones are '
                'trustworthy', _fixed('warmup.type=gradual')),
    Alternative('warmup', 'phased',
                'explicit update counts per part and phase (here: model '
                'only, then 2 critic updates per actor update)', _phased),
    # optimizers.type (base: 'separate')
    Alternative('optimizers', 'single',
                'one loss for all: the actor loss shapes the world model '
                '(decision-aware model)', _fixed('optimizers.type=single')),
    Alternative('optimizers', 'masked',
                "one optimizer's settings, parts still separated, clipped "
                'per part', _fixed('optimizers.type=masked')),
    # world_model.target (base: 'none', imagine in the online model)
    Alternative('world_model.target', 'copy',
                'the actor chases a moving model: imagine in a copy '
                'refreshed every target_every updates',
                _fixed('world_model.target=copy')),
    Alternative('world_model.target', 'ema',
                "as 'copy', smoother: imagine in a slow moving average",
                _fixed('world_model.target=ema')),
    # acting.uncertainty (base: off)
    Alternative('acting', 'uncertainty',
                'act conservatively (mean action) where the model is unsure',
                _fixed('acting.uncertainty=true')),
    Alternative('acting', 'uncertainty_mpc',
                'where the model is unsure, plan instead of trusting the '
                'actor', _fixed('acting.uncertainty=true',
                                'acting.fallback=mpc')),
    # actor.gradient (CartPole's base: reinforce; Pendulum's: dynamics)
    Alternative('actor.gradient', 'reinforce',
                'discrete actions, or a model too rough to differentiate',
                _fixed('actor.gradient=reinforce')),
    Alternative('actor.gradient', 'dynamics_gradient',
                'continuous actions and a smooth model: low-variance '
                'gradients', _fixed('actor.gradient=dynamics')),
)
BY_NAME = {a.name: a for a in ALTERNATIVES}


@dataclasses.dataclass
class Resolved:
  """An alternative applied to an environment's config."""
  status: str  # 'ok' | 'refused' | 'same_as_baseline' | 'duplicate'
  overrides: List[str]
  config: Optional[Config] = None
  message: str = ''
  same_as: str = ''  # 'duplicate': the alternative with the same config


def resolve(alternative: Alternative, env: str,
            extra: Sequence[str] = (),
            earlier: Optional[Dict[str, Resolved]] = None) -> Resolved:
  """Validates the alternative's config for `env` (no TensorFlow needed).

  `earlier` maps names of alternatives already resolved for `env` to their
  results: an alternative whose config equals one of theirs that runs is
  'duplicate' (not run again; e.g. 'dyna_positive' is 'dyna' on an env
  whose base config does not use dyna).
  """
  path = config_path(env)
  base = config_lib.load_config(path, list(extra))
  overrides = alternative.overrides(base)
  try:
    config = config_lib.load_config(path, list(extra) + overrides)
  except ConfigError as e:
    return Resolved('refused', overrides, message=str(e))
  as_dict = config_lib.to_dict(config)
  if overrides and as_dict == config_lib.to_dict(base):
    return Resolved('same_as_baseline', overrides, config,
                    f'{" ".join(overrides)} is the config of {env}.')
  for name, other in (earlier or {}).items():
    if other.status == 'ok' and config_lib.to_dict(other.config) == as_dict:
      return Resolved('duplicate', overrides, config,
                      f'{" ".join(overrides)} is the config of {name} on '
                      f'{env}.', same_as=name)
  return Resolved('ok', overrides, config)


# ----------------------------------------------------------------------------
# Timing, in a worker process.
# ----------------------------------------------------------------------------


def random_batch(spec, batch_size: int, length: int, rng) -> Dict:
  """A random batch [batch_size, length, ...] in the replay's step format.

  Observations and rewards are standard normal, actions uniform (one-hot or
  inside the bounds); about one step in 50 ends an episode.
  """
  import numpy as np
  import tensorflow as tf
  from wm_tf.runtime.collector import random_actions
  shape = (batch_size, length)
  action = random_actions(rng, spec, batch_size * length).reshape(
      shape + (spec.action_dim,))
  is_last = rng.random(shape) < 0.02
  is_terminal = is_last & (rng.random(shape) < 0.5)
  is_first = np.zeros(shape, bool)
  is_first[:, 0] = True
  is_first[:, 1:] = is_last[:, :-1]
  values = {
      'observation': rng.standard_normal(
          shape + (spec.observation_dim,)).astype(np.float32),
      'action': action,
      'reward': rng.standard_normal(shape).astype(np.float32),
      'is_first': is_first,
      'is_terminal': is_terminal,
      'is_last': is_last,
  }
  return {k: tf.convert_to_tensor(v) for k, v in values.items()}


def _statistics(seconds: Sequence[float]) -> Dict[str, float]:
  import numpy as np
  ms = np.asarray(seconds) * 1000.0
  p25, median, p75 = np.percentile(ms, [25, 50, 75])
  return {'median': float(median), 'p25': float(p25), 'p75': float(p75),
          'min': float(ms.min()), 'max': float(ms.max()),
          'relative_iqr': float((p75 - p25) / median) if median else None,
          'n': int(ms.size), 'samples': [round(float(x), 2) for x in ms]}


def _wait(outputs) -> None:
  """Blocks until the step's outputs exist (they are fetched to numpy)."""
  import tensorflow as tf
  for value in tf.nest.flatten(outputs):
    if hasattr(value, 'numpy'):
      value.numpy()


def steady_env_step(config: Config) -> int:
  """An env step after every warmup has ended."""
  w = config.warmup
  return max([config.run.total_env_steps, w.steps] +
             [p.end_step for p in w.phases])


class TimedAgent:
  """An agent built from a config, with its train and act steps as calls.

  `train()` is one steady-state train step (the warmup schedule's update
  after the warmup) on a fixed random batch; `act()` one acting step on
  env.num_envs random observations. Both return their outputs.
  """

  def __init__(self, config: Config):
    import keras
    import numpy as np
    import tensorflow as tf
    from wm_tf.agent.builder import build_agent
    from wm_tf.runtime.environments import inspect_env
    self.config = config
    spec = inspect_env(config.env.id, config.env.max_episode_steps)
    keras.utils.set_random_seed(config.seed)
    start = time.perf_counter()
    self.agent = build_agent(config, spec)  # may raise ConfigError
    self.build_seconds = time.perf_counter() - start
    rng = np.random.default_rng(config.seed)
    self.batch = random_batch(spec, config.replay.batch_size,
                              config.replay.sequence_length, rng)
    self.observation = {'observation': tf.convert_to_tensor(
        rng.standard_normal((config.env.num_envs, spec.observation_dim)
                            ).astype(np.float32))}
    seeds = tf.random.Generator.from_seed(config.seed)
    self.next_seed = lambda: tf.cast(seeds.make_seeds(1)[:, 0], tf.int32)
    self.env_step = steady_env_step(config)
    # Mid-episode acting: the state after one step (recurrent latents too).
    self.is_first = tf.zeros([config.env.num_envs], tf.bool)
    self.state = self.agent.policy.initial_state(config.env.num_envs)

  def train(self):
    return self.agent.warmup.update(self.agent.learner, lambda: self.batch,
                                    self.next_seed, self.env_step)

  def act(self):
    action, self.state, _ = self.agent.policy.act(
        self.observation, self.is_first, self.state, self.next_seed())
    return action


def _first_call(call) -> float:
  start = time.perf_counter()
  _wait(call())
  return time.perf_counter() - start


def _timed_calls(call, steps: int, warmup_steps: int,
                 reference=None) -> Dict[str, object]:
  """Times `steps` calls after `warmup_steps` untimed ones.

  With a `reference` call (the baseline's, already compiled), the two
  alternate (call, reference, reference, call, ...) and the median of the
  ratios of neighbouring calls is reported: a slow change of the machine's
  load slows both alike, so the ratio drifts far less than the ms do.
  """
  for _ in range(warmup_steps):
    _wait(call())
    if reference is not None:
      # Building an agent seeds TensorFlow (keras.utils.set_random_seed),
      # which clears the eager kernel caches: the reference's next call
      # instantiates and optimises its graph again (seconds, not ms).
      _wait(reference())
  seconds, reference_seconds = [], []
  for i in range(steps):
    pair = [(call, seconds)]
    if reference is not None:
      pair.append((reference, reference_seconds))
      if i % 2:
        pair.reverse()
    for fn, out in pair:
      start = time.perf_counter()
      _wait(fn())
      out.append(time.perf_counter() - start)
  result = {'ms': _statistics(seconds)}
  if reference is not None:
    result['ratio_to_baseline'] = median(
        [a / b for a, b in zip(seconds, reference_seconds)])
    result['baseline_ms'] = _statistics(reference_seconds)
  return result


def time_alternative(alternative: Alternative, env: str, extra: Sequence[str],
                     steps: int, warmup_steps: int, jit: Optional[bool],
                     reference: Optional[TimedAgent] = None
                     ) -> tuple:
  """Builds the agent of one alternative and times its train and act steps.

  Returns (record, the TimedAgent or None).
  """
  overrides = list(extra) + (
      [] if jit is None else [f'run.jit={str(jit).lower()}'])
  resolved = resolve(alternative, env, overrides)
  record = {'env': env, 'alternative': alternative.name,
            'status': resolved.status, 'message': resolved.message}
  if resolved.status != 'ok':
    return record, None
  config = resolved.config
  record['jit'] = config.run.jit
  record['load_before'] = os.getloadavg()
  try:
    timed = TimedAgent(config)
  except ConfigError as e:
    record.update(status='refused', message=str(e))
    return record, None
  if reference is timed or reference is None:
    reference_train = reference_act = None
  else:
    reference_train, reference_act = reference.train, reference.act
  record.update(
      build_seconds=timed.build_seconds,
      batch_shape=[config.replay.batch_size, config.replay.sequence_length],
      env_step=timed.env_step,
      train_first_call_seconds=_first_call(timed.train),
      act_first_call_seconds=_first_call(timed.act))
  train = _timed_calls(timed.train, steps, warmup_steps, reference_train)
  act = _timed_calls(timed.act, steps, warmup_steps, reference_act)
  record.update(ms_per_train_step=train['ms'], ms_per_act_step=act['ms'],
                load_after=os.getloadavg())
  if reference_train is not None:
    record.update(train_ratio_to_baseline=train['ratio_to_baseline'],
                  act_ratio_to_baseline=act['ratio_to_baseline'],
                  paired_baseline_ms_per_train_step=train['baseline_ms'],
                  paired_baseline_ms_per_act_step=act['baseline_ms'])
  return record, timed


def run_worker(task_path: str) -> None:
  """Times the tasks of a JSON file, appending one JSON line per task.

  With task['paired'], the first baseline agent built for an env (the
  baseline task itself, or one built for the purpose) stays alive and
  every other alternative of that env is timed interleaved with it.
  """
  import traceback
  with open(task_path) as f:
    task = json.load(f)
  references: Dict[str, TimedAgent] = {}
  timing_args = (task['extra'], task['steps'], task['warmup_steps'],
                 task['jit'])
  with open(task['results'], 'a') as out:
    for env, name, label in task['tasks']:
      print(f'timing {env} {label}', flush=True)
      for other in [e for e in references if e != env]:
        del references[other]  # tasks come env by env
      try:
        if task['paired'] and env not in references and name != 'baseline':
          print(f'building the {env} baseline as the reference', flush=True)
          _, timed = time_alternative(BY_NAME['baseline'], env, *timing_args,
                                      reference=None)
          if timed is not None:
            references[env] = timed
        record, timed = time_alternative(
            BY_NAME[name], env, *timing_args, reference=references.get(env))
        if (task['paired'] and name == 'baseline' and env not in references
            and timed is not None):
          references[env] = timed  # timed alone: it is its own reference
          record['train_ratio_to_baseline'] = 1.0
          record['act_ratio_to_baseline'] = 1.0
        del timed
      except Exception as e:  # reported, and the worker goes on
        traceback.print_exc()
        record = {'env': env, 'alternative': name, 'status': 'failed',
                  'message': f'{type(e).__name__}: {e}'}
      record['label'] = label
      out.write(json.dumps(record) + '\n')
      out.flush()
      print(f'done {env} {label}: {record["status"]}', flush=True)
      gc.collect()  # the alternative's agent (the reference stays)


def _tail(path: str, lines: int = 5) -> str:
  try:
    with open(path) as f:
      return ' | '.join(l.rstrip() for l in f.readlines()[-lines:])
  except OSError:
    return ''


def run_timing(tasks: List[List[str]], output: str, parallel: int,
               extra: Sequence[str], steps: int, warmup_steps: int,
               jit: Optional[bool], paired: bool,
               tasks_per_worker: int) -> Dict[tuple, Dict]:
  """Times (env, alternative, label) tasks in worker subprocesses.

  Tasks are dealt round-robin to `parallel` workers, each given at most
  `tasks_per_worker`; the rest go to the next round of workers. A worker
  that dies loses the task it was on (reported as 'crashed' with its log's
  tail); the tasks after it go to new workers.
  """
  work = os.path.join(output, 'timing')
  os.makedirs(work, exist_ok=True)
  results: Dict[tuple, Dict] = {}
  pending = list(tasks)
  attempt = 0
  print(f'timing {len(tasks)} tasks in {min(parallel, len(tasks))} '
        f'worker(s); progress in {work}/worker*.log', flush=True)
  while pending:
    workers = []
    later = pending[parallel * tasks_per_worker:]
    pending = pending[:parallel * tasks_per_worker]
    for i in range(min(parallel, len(pending))):
      mine = pending[i::parallel]
      stem = os.path.join(work, f'worker{attempt}-{i}')
      for suffix in ('.jsonl', '.log'):
        if os.path.exists(stem + suffix):
          os.remove(stem + suffix)
      with open(stem + '.json', 'w') as f:
        json.dump({'tasks': mine, 'results': stem + '.jsonl', 'extra':
                   list(extra), 'steps': steps, 'warmup_steps': warmup_steps,
                   'jit': jit, 'paired': paired}, f)
      log = open(stem + '.log', 'w')
      proc = subprocess.Popen(
          [sys.executable, '-m', 'benchmarks.alternatives',
           f'--worker={stem}.json'], cwd=ROOT, stdout=log,
          stderr=subprocess.STDOUT)
      workers.append((proc, log, mine, stem))
    pending = []
    for proc, log, mine, stem in workers:
      proc.wait()
      log.close()
      done = {}
      if os.path.exists(stem + '.jsonl'):
        with open(stem + '.jsonl') as f:
          for line in f:
            record = json.loads(line)
            done[(record['env'], record['label'])] = record
      results.update(done)
      left = [t for t in mine if (t[0], t[2]) not in done]
      if left:
        env, name, label = left[0]
        results[(env, label)] = {
            'env': env, 'alternative': name, 'label': label,
            'status': 'crashed',
            'message': f'timing worker exit {proc.returncode}: '
                       f'{_tail(stem + ".log")}'}
        pending += left[1:]
      for env, _, label in mine:
        if (env, label) in results:
          r = results[(env, label)]
          shown = (f'{r["ms_per_train_step"]["median"]:.1f} ms/train step, '
                   f'{r["ms_per_act_step"]["median"]:.2f} ms/act step'
                   if 'ms_per_train_step' in r else r['status'])
          if r.get('train_ratio_to_baseline') is not None:
            shown += (f'; x{r["train_ratio_to_baseline"]:.2f} / '
                      f'x{r["act_ratio_to_baseline"]:.2f} of the baseline')
          print(f'timed {env} {label}: {shown}', flush=True)
    pending += later
    attempt += 1
  return results


def timings_of_report(report: Dict, envs: Sequence[str],
                      names: Sequence[str]) -> Dict[tuple, Dict]:
  """The timing records of an earlier report, keyed (env, label) as
  `run_timing` returns them, for the given envs and alternatives."""
  missing = [e for e in envs if e not in report['meta']['envs']]
  if missing:
    raise app.UsageError(f'--timing_from: the report has no env {missing}; '
                         f'it has {report["meta"]["envs"]}.')
  timings = {}
  for row in report['alternatives']:
    if row['alternative'] not in names:
      continue
    for env in envs:
      entry = row['envs'].get(env) or {}
      if 'timing' in entry:
        timings[(env, row['alternative'])] = entry['timing']
      if 'timing_repeat' in entry:
        timings[(env, 'baseline (repeat)')] = entry['timing_repeat']
  return timings


# ----------------------------------------------------------------------------
# Learning runs.
# ----------------------------------------------------------------------------


def _shown_path(path: str) -> str:
  """Relative to the repository if inside it, else absolute."""
  relative = os.path.relpath(path, ROOT)
  return path if relative.startswith('..') else relative


def _late_update_ms(rows) -> Optional[float]:
  """Median over the second half of a run's evaluation windows of the
  median wall ms per update (replay sampling included; the column
  'update_ms' of evaluations.csv): by then the actor and critic train."""
  late = [r['update_ms'] for r in rows[len(rows) // 2:]
          if math.isfinite(r.get('update_ms', math.nan))]
  return median(late)


def learning_summary(jobs: List[Dict], threshold: Optional[float]) -> Dict:
  """Per-seed and median results of one alternative on one env."""
  seeds, refusal = {}, None
  for job in jobs:
    path = os.path.join(job['logdir'], 'evaluations.csv')
    rows = read_evaluations(path) if os.path.exists(path) else []
    entry = {'exit': job.get('exit'), 'wall_seconds': job.get('wall_seconds'),
             'steps_to_threshold': steps_to_threshold(rows, threshold),
             'final_return': rows[-1]['eval/return'] if rows else None,
             'final_env_steps': int(rows[-1]['env_steps']) if rows else None,
             'evaluations': [[int(r['env_steps']), r['eval/return']]
                             for r in rows],
             'update_ms': _late_update_ms(rows),
             'logdir': _shown_path(job['logdir'])}
    if job.get('exit'):
      entry['error'] = (error_line(job['logdir'] + '.log') or
                        _tail(job['logdir'] + '.log') or
                        f'exit {job["exit"]}, empty log')
      if job['exit'] == 2 and error_line(job['logdir'] + '.log'):
        refusal = entry['error']
    seeds[job['seed']] = entry
  # Medians over the runs that completed their budget; a run that ended
  # early is reported per seed and makes the status 'failed'.
  finished = [s for s in seeds.values()
              if s['exit'] == 0 and s['final_return'] is not None]
  reached = [s['steps_to_threshold'] for s in finished]
  steps_median = median([math.inf if s is None else s for s in reached])
  failures = '; '.join(
      f'seed {seed}: {s.get("error", "no evaluations")}'
      for seed, s in seeds.items()
      if s['exit'] != 0 or s['final_return'] is None)
  return {
      'status': ('refused' if refusal else
                 'ok' if len(finished) == len(seeds) else 'failed'),
      'message': refusal or failures,
      'seeds': seeds,
      'threshold': threshold,
      'seeds_completed': len(finished),
      'seeds_reaching_threshold': sum(s is not None for s in reached),
      'steps_to_threshold_median': (
          None if steps_median in (None, math.inf) else steps_median),
      'final_return_median': median([s['final_return'] for s in finished]),
      'update_ms_median': median([s['update_ms'] for s in finished
                                  if s['update_ms'] is not None]),
  }


# ----------------------------------------------------------------------------
# Report.
# ----------------------------------------------------------------------------


def _number(x, digits: int = 0) -> str:
  return '–' if x is None else f'{x:.{digits}f}'


def _ratio(x) -> str:
  return '' if x is None else f' (x{x:.2f})'


class Notes:
  """Numbered footnotes for refusals and failures, each message once."""

  def __init__(self):
    self.messages: List[str] = []

  def ref(self, message: str) -> str:
    message = ' '.join(str(message).split())  # tracebacks on one line
    if len(message) > 400:
      message = message[:200] + ' ... ' + message[-195:]
    if message not in self.messages:
      self.messages.append(message)
    return f'[{self.messages.index(message) + 1}]'


def _cell_status(entry: Dict, notes: Notes) -> Optional[str]:
  if entry['status'] == 'refused':
    return 'refused ' + notes.ref(entry['message'])
  if entry['status'] == 'same_as_baseline':
    return '= baseline'
  if entry['status'] == 'duplicate':
    return '= ' + entry['same_as']
  if entry['status'] == 'not_run':
    return 'not run'
  return None


IN_RUN_TIMING = ('median wall ms per update inside the learning runs '
                 '(replay sampling included, --parallel runs sharing the '
                 'cores), second half of each run')


def markdown_table(report: Dict) -> str:
  envs = report['meta']['envs']
  notes = Notes()
  head = ['family', 'alternative', 'when to use it',
          'ms/train step (' + ' / '.join(env_info(e).label for e in envs) +
          ')', 'ms/act step']
  for env in envs:
    info = env_info(env)
    target = _number(info.threshold) if info.threshold is not None else '?'
    head += [f'{info.label} steps to {target}', f'{info.label} final']
  lines = ['| ' + ' | '.join(head) + ' |', '|' + ' --- |' * len(head)]
  for alt in report['alternatives']:
    train, act, learning = [], [], []
    for env in envs:
      entry = alt['envs'][env]
      status = _cell_status(entry, notes)
      timing = entry.get('timing') or {}
      if status:
        train.append(status)
        act.append(status)
      elif 'ms_per_train_step' in timing:
        train.append(_number(timing['ms_per_train_step']['median']) +
                     _ratio(timing.get('train_ratio_to_baseline')))
        act.append(_number(timing['ms_per_act_step']['median'], 1) +
                   _ratio(timing.get('act_ratio_to_baseline')))
      elif timing:
        label = f'{timing["status"]} {notes.ref(timing["message"])}'
        train.append(label)
        act.append(label)
      elif (entry.get('learning') or {}).get('update_ms_median'):
        # Not timed apart: the median update inside the learning runs.
        train.append(_number(entry['learning']['update_ms_median']) + ' ' +
                     notes.ref(IN_RUN_TIMING))
        act.append('–')
      else:
        train.append('–')
        act.append('–')
      result = entry.get('learning')
      if status:
        learning += [status, status]
      elif result is None:
        learning += ['–', '–']
      elif result['status'] != 'ok' and not result['seeds_completed']:
        learning += [f'{result["status"]} {notes.ref(result["message"])}'] * 2
      else:
        n = result['seeds_completed']
        failed = ''
        if result['status'] != 'ok':  # some seeds ended early
          failed = ' ' + notes.ref(result['message'])
        learning += [
            f'{_number(result["steps_to_threshold_median"])} '
            f'({result["seeds_reaching_threshold"]}/{n}){failed}',
            _number(result['final_return_median'], 1) + failed]
    row = [alt['family'], alt['alternative'], alt['when'],
           ' / '.join(train), ' / '.join(act)] + learning
    lines.append('| ' + ' | '.join(row) + ' |')
  for i, message in enumerate(notes.messages):
    lines.append(f'\n[{i + 1}] {message}')
  return '\n'.join(lines)


def merge_reports(reports: Sequence[Dict]) -> Dict:
  """One report with the environments of several (made one env each).

  Rows are matched by alternative name, in the order of the first report
  (then any names the others add); an env a report lacks is an empty cell.
  'meta' keeps each report's own under 'merged_from'.
  """
  envs, rows = [], {}
  for report in reports:
    for env in report['meta']['envs']:
      if env in envs:
        raise ValueError(f'Environment {env!r} is in more than one report.')
      envs.append(env)
    for alt in report['alternatives']:
      row = rows.setdefault(alt['alternative'], dict(alt, envs={}))
      row['envs'].update(alt['envs'])
  for row in rows.values():
    for env in envs:
      row['envs'].setdefault(env, {'status': 'not_run', 'message': ''})
  return {'meta': {'envs': envs,
                   'merged_from': [r['meta'] for r in reports]},
          'noise': None, 'alternatives': list(rows.values())}


def noise_summary(timings: Dict[tuple, Dict]) -> Dict:
  """How far the ms figures can be trusted: spreads, load, baseline drift."""
  ok = [r for r in timings.values() if 'ms_per_train_step' in r]
  out = {'median_relative_iqr_train': median(
      [r['ms_per_train_step']['relative_iqr'] for r in ok]),
         'median_relative_iqr_act': median(
      [r['ms_per_act_step']['relative_iqr'] for r in ok]),
         'load_average_1min': [min(r['load_before'][0] for r in ok),
                               max(r['load_after'][0] for r in ok)]
         if ok else None,
         'baseline_repeat': {}}
  for (env, label), r in timings.items():
    first = timings.get((env, 'baseline'))
    if label == 'baseline (repeat)' and first and 'ms_per_train_step' in r \
        and 'ms_per_train_step' in first:
      a, b = (first['ms_per_train_step']['median'],
              r['ms_per_train_step']['median'])
      out['baseline_repeat'][env] = {
          'first_ms': a, 'repeat_ms': b, 'ms_ratio': b / a,
          # Paired with the reference baseline: ideally 1.0.
          'paired_train_ratio': r.get('train_ratio_to_baseline'),
          'paired_act_ratio': r.get('act_ratio_to_baseline')}
  return out


def _rounded(value):
  """Floats to 5 significant digits (timings are not better than 1%)."""
  if isinstance(value, float) and math.isfinite(value):
    return float(f'{value:.5g}')
  if isinstance(value, dict):
    return {k: _rounded(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_rounded(v) for v in value]
  return value


def to_json(report: Dict) -> str:
  """Indented JSON, floats rounded, each list of numbers on one line."""
  text = json.dumps(_rounded(report), indent=1)
  return re.sub(r'\[\s+([-+0-9.eE,\s]+?)\s+\]',
                lambda m: '[' + ' '.join(m.group(1).split()) + ']', text)


def write_csv(report: Dict, path: str) -> None:
  fields = ['family', 'alternative', 'env', 'status', 'overrides',
            'ms_per_train_step', 'ms_per_train_step_p25',
            'ms_per_train_step_p75', 'train_ratio_to_baseline',
            'ms_per_act_step', 'act_ratio_to_baseline', 'train_compile_seconds',
            'seeds', 'seeds_reaching_threshold', 'steps_to_threshold',
            'final_return', 'message']
  with open(path, 'w', newline='') as f:
    writer = csv.DictWriter(f, fields)
    writer.writeheader()
    for alt in report['alternatives']:
      for env, entry in alt['envs'].items():
        timing = entry.get('timing') or {}
        learning = entry.get('learning') or {}
        train = timing.get('ms_per_train_step') or {}
        status = entry['status']
        if status == 'ok' and timing.get('status') not in (None, 'ok'):
          status = 'timing_' + timing['status']
        if status == 'ok' and learning.get('status') not in (None, 'ok'):
          status = 'learning_' + learning['status']
        writer.writerow({
            'family': alt['family'], 'alternative': alt['alternative'],
            'env': env, 'status': status,
            'overrides': ' '.join(entry['overrides']),
            'ms_per_train_step': train.get('median'),
            'ms_per_train_step_p25': train.get('p25'),
            'ms_per_train_step_p75': train.get('p75'),
            'train_ratio_to_baseline': timing.get('train_ratio_to_baseline'),
            'ms_per_act_step': (timing.get('ms_per_act_step') or {}).get(
                'median'),
            'act_ratio_to_baseline': timing.get('act_ratio_to_baseline'),
            'train_compile_seconds': timing.get('train_first_call_seconds'),
            'seeds': len(learning.get('seeds', {})) or None,
            'seeds_reaching_threshold': learning.get(
                'seeds_reaching_threshold'),
            'steps_to_threshold': learning.get('steps_to_threshold_median'),
            'final_return': learning.get('final_return_median'),
            'message': entry.get('message') or timing.get('message') or
                       learning.get('message') or ''})


# ----------------------------------------------------------------------------
# Main.
# ----------------------------------------------------------------------------


def source_version() -> Dict[str, object]:
  """The commit of the library measured, and whether wm_tf/ differs."""
  def git(*args):
    try:
      return subprocess.run(['git', *args], cwd=ROOT, capture_output=True,
                            text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
      return ''
  changed = git('status', '--porcelain', '--', 'wm_tf', 'launch', 'configs')
  return {'commit': git('rev-parse', 'HEAD') or None,
          'library_changes': changed.splitlines() if changed else []}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if FLAGS.worker:
    run_worker(FLAGS.worker)
    return
  unknown = [n for n in FLAGS.only if n not in BY_NAME]
  if unknown:
    raise app.UsageError(f'--only: unknown alternative(s) {unknown}; '
                         f'allowed: {", ".join(BY_NAME)}.')
  for env in FLAGS.envs:
    if not os.path.exists(config_path(env)):
      raise app.UsageError(f'--envs: no config {config_path(env)}.')
  if FLAGS.table_from:
    reports = []
    for path in FLAGS.table_from:
      with open(path) as f:
        reports.append(json.load(f))
    print(markdown_table(merge_reports(reports)))
    return
  if min(FLAGS.parallel, FLAGS.seeds, FLAGS.timing_tasks_per_worker) < 1:
    raise app.UsageError('--parallel, --seeds and --timing_tasks_per_worker '
                         'must be >= 1.')
  chosen = [a for a in ALTERNATIVES if not FLAGS.only or a.name in FLAGS.only]
  name = FLAGS.name or ('alternatives_timing' if FLAGS.timing_only
                        else 'alternatives')
  output = os.path.abspath(FLAGS.output)
  os.makedirs(output, exist_ok=True)
  extra = list(FLAGS.set)
  budgets = {env: FLAGS.budget or config_lib.load_config(
      config_path(env), extra).run.total_env_steps for env in FLAGS.envs}

  resolved = {}
  for env in FLAGS.envs:
    earlier = {}
    for a in chosen:
      earlier[a.name] = resolved[(env, a.name)] = resolve(a, env, extra,
                                                          earlier)
  for (env, alt), r in resolved.items():
    if r.status != 'ok':
      print(f'{env} {alt}: {r.status}: {r.message}', flush=True)

  timings: Dict[tuple, Dict] = {}
  load_start = os.getloadavg()
  if FLAGS.timing_from:
    for path in FLAGS.timing_from:
      with open(path) as f:
        timings.update(timings_of_report(json.load(f), FLAGS.envs,
                                         [a.name for a in chosen]))
  elif FLAGS.timing:
    tasks = []
    for env in FLAGS.envs:
      tasks += [[env, a.name, a.name] for a in chosen
                if resolved[(env, a.name)].status == 'ok']
      if FLAGS.repeat_baseline and any(
          a.name == 'baseline' for a in chosen) and len(chosen) > 1:
        tasks.append([env, 'baseline', 'baseline (repeat)'])
    started = time.time()
    timings = run_timing(tasks, output, FLAGS.parallel, extra,
                         FLAGS.timing_steps, FLAGS.timing_warmup_steps,
                         FLAGS.timing_jit, FLAGS.paired,
                         FLAGS.timing_tasks_per_worker)
    print(f'timing: {len(tasks)} tasks in {time.time() - started:.0f} s',
          flush=True)

  learning_jobs: Dict[tuple, List[Dict]] = {}
  threads = threads_per_run(FLAGS.parallel, FLAGS.threads)
  if not FLAGS.timing_only:
    all_jobs = []
    # Seed-major order: every alternative's seed 0 runs before any seed 1,
    # so a benchmark stopped early leaves the same seeds for every row.
    for seed in range(FLAGS.seeds):
      for env in FLAGS.envs:
        for a in chosen:
          r = resolved[(env, a.name)]
          if r.status != 'ok':
            continue
          logdir = os.path.join(output, 'runs', f'{env}-{budgets[env]}',
                                f'{a.name}-seed{seed}')
          job = {'env': env, 'alternative': a.name, 'seed': seed,
                 'logdir': logdir, 'name': f'{env} {a.name} seed {seed}'}
          if run_completed(logdir, budgets[env]):
            job.update(exit=0, wall_seconds=None, reused=True)
          elif FLAGS.existing_only:
            continue
          else:
            job['cmd'] = train_command(
                config_path(env), logdir, seed,
                extra + r.overrides + [f'run.total_env_steps={budgets[env]}'],
                threads)
            all_jobs.append(job)
          learning_jobs.setdefault((env, a.name), []).append(job)
    run_jobs(all_jobs, FLAGS.parallel)

  alternatives = []
  for a in chosen:
    entry = {'family': a.family, 'alternative': a.name, 'when': a.when,
             'envs': {}}
    for env in FLAGS.envs:
      r = resolved[(env, a.name)]
      e = {'status': r.status, 'message': r.message, 'overrides': r.overrides}
      if r.same_as:
        e['same_as'] = r.same_as
      timing = timings.get((env, a.name))
      if timing is not None:
        if timing['status'] == 'refused':  # refused while building
          e.update(status='refused', message=timing['message'])
        e['timing'] = timing
        if timing['status'] not in ('ok', 'refused'):
          e['timing_status'] = timing['status']
      if (env, a.name) in learning_jobs:
        e['learning'] = learning_summary(learning_jobs[(env, a.name)],
                                         env_info(env).threshold)
        if e['learning']['status'] == 'refused':
          e.update(status='refused', message=e['learning']['message'])
      entry['envs'][env] = e
    alternatives.append(entry)
  for env in FLAGS.envs:
    repeat = timings.get((env, 'baseline (repeat)'))
    for entry in alternatives:
      if repeat is not None and entry['alternative'] == 'baseline':
        entry['envs'][env]['timing_repeat'] = repeat

  report = {
      'meta': {
          'command': ' '.join(sys.argv),
          'envs': list(FLAGS.envs),
          'thresholds': {e: env_info(e).threshold for e in FLAGS.envs},
          'budgets': None if FLAGS.timing_only else budgets,
          'seeds': None if FLAGS.timing_only else FLAGS.seeds,
          'timing_steps': (FLAGS.timing_steps if FLAGS.timing
                           and not FLAGS.timing_from else None),
          'timing_from': FLAGS.timing_from,
          'timing_jit': ('config' if FLAGS.timing_jit is None
                         else FLAGS.timing_jit),
          'timing_paired': FLAGS.paired,
          'parallel': FLAGS.parallel,
          'threads': threads,
          'extra_overrides': extra,
          'source': source_version(),
          'machine': {'cpus': os.cpu_count(), 'platform': platform.platform(),
                      'python': platform.python_version()},
          'load_average_start': load_start,
          'load_average_end': os.getloadavg(),
          'finished': time.strftime('%Y-%m-%d %H:%M:%S'),
      },
      'noise': noise_summary(timings) if timings else None,
      'alternatives': alternatives,
  }
  with open(os.path.join(output, name + '.json'), 'w') as f:
    f.write(to_json(report))
  write_csv(report, os.path.join(output, name + '.csv'))
  print(markdown_table(report))
  if report['noise']:
    print('\nnoise: ' + json.dumps(report['noise']))
  print(f'\nwrote {os.path.join(output, name)}.json and .csv')


if __name__ == '__main__':
  app.run(main)
