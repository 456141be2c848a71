"""The training loop: collect, store, update, evaluate, log, checkpoint.

Running a Trainer on a logdir that already holds a run resumes it: the
newest readable checkpoint is restored (agent, optimizers, train step,
random generators; see `wm_tf.runtime.checkpoints`) and the episodes on
disk are reloaded into the replay. The data on disk is what the counters
follow: a resumed run's env steps are the steps stored, its episodes the
finished episodes stored, so data collected after the checkpoint is
counted once and trained on, and the updates owed for it at
`run.train_ratio` are added to those due. Every checkpoint first writes the
unfinished episodes' steps (`SequenceReplay.save_open_episodes`), so a kill
loses only the steps collected since the newest checkpoint. Evaluations
and TensorBoard events written after the restored checkpoint are taken
back (`wm_tf.runtime.run_log`): the resumed run writes them again.

Checkpoints are written every `run.checkpoint_seconds` of wall time and
every `run.checkpoint_every` train steps (either may be 0: off), and at
the end.
"""

from __future__ import annotations

import os
import time
import warnings
from typing import Dict, List, Optional, Tuple

import keras
import numpy as np
import tensorflow as tf
import tqdm

from wm_tf import config as config_lib
from wm_tf.agent.builder import Agent, build_agent, example_batch
from wm_tf.runtime import checkpoints as checkpoints_lib
from wm_tf.runtime import collector as collector_lib
from wm_tf.runtime import distribution
from wm_tf.runtime import run_lock
from wm_tf.runtime import run_log
from wm_tf.runtime import tensorboard_images
from wm_tf.runtime.environments import inspect_env, make_vector_env
from wm_tf.runtime.metrics import (ScalarAverager, run_histograms,
                                   write_histograms, write_scalars)
from wm_tf.runtime.profiling import StepProfiler
from wm_tf.runtime.replay import SequenceReplay, step_spec
from wm_tf.runtime.replay_memory import check_replay_memory
from wm_tf.runtime.run_state import CheckpointedRun


class NonFiniteLossError(RuntimeError):
  """Too many updates in a row had a non-finite loss; the run stopped."""


def make_deterministic(seed: int) -> None:
  """Deterministic TF kernels, and every global generator seeded.

  Process-wide: TensorFlow's op determinism cannot be switched off again.
  """
  tf.config.experimental.enable_op_determinism()
  keras.utils.set_random_seed(seed)


def update_was_nonfinite(metrics: Dict[str, object]) -> bool:
  """Whether an update met a non-finite loss.

  The learner reports a skipped update as 'learner/nonfinite' > 0; without
  that metric, every '<part>/loss' metric is checked.
  """
  if 'learner/nonfinite' in metrics:
    return float(np.asarray(metrics['learner/nonfinite'])) > 0
  return not all(np.isfinite(float(np.asarray(v)))
                 for k, v in metrics.items() if k.endswith('/loss'))


def _replay_capacity(config: config_lib.Config) -> int:
  """replay.capacity, at most the run's total env steps (a buffer larger
  than the run never fills, and image steps are large), raised to one
  sequence per environment stream."""
  rc = config.replay
  return max(min(rc.capacity, config.run.total_env_steps),
             rc.sequence_length * config.env.num_envs)


def _local_batch_size(config: config_lib.Config,
                      strategy: Optional[tf.distribute.Strategy]) -> int:
  """The sequences this worker samples per update."""
  if strategy is None:
    return config.replay.batch_size
  try:
    return distribution.local_batch_size(strategy, config.replay.batch_size)
  except ValueError as e:
    raise config_lib.ConfigError(str(e)) from None


class Trainer(CheckpointedRun):
  """Trains one agent on one environment as the config says.

  Args:
    config: a validated `Config`.
    logdir: where TensorBoard events, the config, episodes and checkpoints
      go. If it holds a run already, that run is resumed.
    progress: show a progress bar on stderr.
    allow_config_change: resume even if `config` differs from the saved
      logdir/config.yaml (which is then replaced).
    profile_steps: (START, STOP): trace train steps START <= s < STOP with
      the TensorFlow profiler (logdir/plugins/profile/).
    strategy: a tf.distribute strategy to train under
      (`wm_tf.runtime.distribution.make_strategy`), or None (or the
      default strategy) for one device. Each update samples this worker's
      share of replay.batch_size and splits it over its replicas.

  Raises:
    ConfigError: replay.batch_size is not a multiple of the strategy's
      replicas.
    UnsupportedEnvironment: an environment id or space wm_tf cannot use.
    ConfigMismatch: a resumed run's config differs from the saved one and
      `allow_config_change` is false.
    run_lock.RunDirectoryInUse: another process trains in `logdir`.
    checkpoints_lib.NoUsableCheckpoint: a resumed run's checkpoints are
      all unreadable.
  """

  def __init__(self, config: config_lib.Config, logdir: str,
               progress: bool = True, allow_config_change: bool = False,
               profile_steps: Optional[Tuple[int, int]] = None,
               strategy: Optional[tf.distribute.Strategy] = None):
    self.config = config
    self.strategy = (strategy if distribution.replicates(strategy)
                     else None)
    self.batch_size = _local_batch_size(config, self.strategy)
    self.logdir = os.path.abspath(logdir)
    self.progress = progress
    self.profiler = StepProfiler(self.logdir, profile_steps)
    env = config.env
    # Fails here, before anything is built, on a bad id or space.
    self.spec = inspect_env(env.id, env.max_episode_steps, options=env)
    # And here if the replay cannot fit in memory (its line is logged).
    self.replay_memory = check_replay_memory(
        step_spec(self.spec.observations, self.spec.action_dim),
        _replay_capacity(config), on_disk=config.replay.storage == 'disk')
    if progress:
      print(self.replay_memory, flush=True)
    # Held while this process lives: one trainer per run directory.
    self._lock = run_lock.lock_run_directory(self.logdir)
    self.config_changes = checkpoints_lib.check_saved_config(
        self.logdir, config, allow_config_change)
    keras.utils.set_random_seed(config.seed)
    self.config_text = config_lib.to_yaml(config)
    checkpoints_lib.write_text_atomically(
        os.path.join(self.logdir, 'config.yaml'), self.config_text)

    self.agent: Agent = build_agent(config, self.spec, self.strategy)
    self._make_replay_and_seeds()
    self._reset_run_state()
    self.evaluations = run_log.EvaluationLog(self.logdir)
    self.checkpoints = checkpoints_lib.RunCheckpoint(
        os.path.join(self.logdir, 'checkpoints'), self.agent,
        values=self._state_values(), trackables={'seeds': self.seeds},
        max_to_keep=config.run.checkpoints_to_keep)
    self.resumed_from: Optional[checkpoints_lib.Restored] = None
    self.dropped_evaluations = 0  # rows after the checkpoint, taken back
    self.reloaded_steps = self._resume()
    # Opened after the resume so that its file sorts after the session
    # start `_resume` writes.
    self.writer = tf.summary.create_file_writer(self.logdir)
    self._last_saved = self.train_steps if self.resumed_from else None
    self._last_saved_time = time.monotonic()

  def _make_replay_and_seeds(self) -> None:
    config, env = self.config, self.config.env
    # Each worker of a cluster collects its own data (worker 0: config seed).
    self.collect_seed = distribution.worker_seed(config.seed, self.strategy)
    rc = config.replay
    self.replay = SequenceReplay(
        step_spec(self.spec.observations, self.spec.action_dim),
        capacity=_replay_capacity(config),
        sequence_length=rc.sequence_length, num_streams=env.num_envs,
        seed=self.collect_seed,
        directory=os.path.join(self.logdir, 'episodes'),
        storage_directory=(os.path.join(self.logdir, 'replay_storage')
                           if rc.storage == 'disk' else None))
    self.rng = np.random.default_rng(self.collect_seed)
    self.seeds = tf.random.Generator.from_seed(config.seed)
    # One compiled call per seed instead of the three eager ops it holds:
    # the same draws, and a step pays the dispatch once, not three times.
    draw = lambda: tf.cast(self.seeds.make_seeds(1)[:, 0], tf.int32)
    self._next_seed = tf.function(draw)
    # An acting seed is this worker's own; the worker index is read once,
    # when the function is traced (worker 0: the same draw as _next_seed).
    self._next_acting_seed = tf.function(
        lambda: distribution.worker_seed(draw(), self.strategy))

  def _reset_run_state(self) -> None:
    """The counters and buffers of a new run (`_resume` may set them)."""
    # Run state saved in every checkpoint (with the agent and `seeds`).
    self.env_steps = 0
    self.episodes = 0  # finished training episodes
    self.updates_due = 0.0  # fractional updates carried to the next step
    self.last_log = self.last_eval = 0  # env steps of the last write
    self.last_histogram = self.last_image = 0
    self.nonfinite_total = 0  # updates skipped for a non-finite loss
    self._update_seconds = []  # wall seconds per update since the last eval
    self.compile_seconds: Optional[float] = None  # the first update's time
    self._bar: Optional[tqdm.tqdm] = None
    self.eval_history: List[Dict[str, float]] = []
    self.nonfinite_in_a_row = 0
    self._last_batch: Optional[Dict[str, np.ndarray]] = None
    self._actions: List[np.ndarray] = []  # env actions since the histogram
    self._compile_train_first = (self.strategy is None and
                                 self.config.run.jit)

  # -- updates --------------------------------------------------------------

  def _seed(self) -> tf.Tensor:
    """The next int32 [2] stateless seed of an update."""
    return self._next_seed()

  def _batch(self) -> Dict[str, tf.Tensor]:
    sample = self.replay.sample(self.batch_size)
    self._last_batch = sample
    if self.strategy is not None:
      return distribution.distribute_batch(self.strategy, sample)
    return {k: tf.convert_to_tensor(v) for k, v in sample.items()}

  def _update(self, averager: ScalarAverager) -> None:
    start = time.perf_counter()
    first = self.compile_seconds is None
    if first:
      self._say_compiling()
    if self._compile_train_first:
      # The full step compiles before any other update program exists,
      # which lowers the run's peak memory (Learner.compile_train).
      self._compile_train_first = False
      self.agent.learner.compile_train(example_batch(
          self.spec, self.batch_size, self.config.replay.sequence_length))
    # The warmup schedule (config `warmup`) decides what this step updates.
    metrics = self.agent.warmup.update(self.agent.learner, self._batch,
                                       self._seed, self.env_steps)
    self._record_update(metrics, averager)  # fetches the metrics: waits
    seconds = time.perf_counter() - start
    self._update_seconds.append(seconds)
    if first:
      self.compile_seconds = seconds
      self._say(f'train step compiled in {seconds:.1f} s '
                f'({"XLA" if self.config.run.jit else "graph"})')

  def _say_compiling(self) -> None:
    """Shows on the progress bar that the first update is compiling."""
    if self._bar is not None and not self._bar.disable:
      self._bar.set_description('compiling the train step')
      self._bar.refresh()

  def _say(self, line: str) -> None:
    """A line on stdout (above the progress bar, if there is one)."""
    if self._bar is not None and not self._bar.disable:
      self._bar.set_description('')
      tqdm.tqdm.write(line)
    else:
      print(line, flush=True)

  def _train_due(self, averager: ScalarAverager) -> None:
    """Runs the whole updates due, checkpointing when one is due."""
    while self.updates_due >= 1.0:
      self.updates_due -= 1.0
      with self.profiler.around(self.train_steps):
        self._update(averager)
      if self._checkpoint_due():
        self.save_checkpoint()

  def _update_ms_since_last_evaluation(self) -> float:
    """Median wall ms of an update (replay sampling included) since the
    last evaluation: the median ignores the few compiling calls."""
    times, self._update_seconds = self._update_seconds, []
    return 1e3 * float(np.median(times)) if times else float('nan')

  def _record_update(self, metrics, averager: ScalarAverager) -> None:
    """Averages an update's metrics; counts and checks non-finite ones."""
    if update_was_nonfinite(metrics):
      self.nonfinite_in_a_row += 1
      self.nonfinite_total += 1
      averager.add({'learner/nonfinite': 1.0})
      limit = self.config.run.max_nonfinite_in_a_row
      if self.nonfinite_in_a_row >= limit:
        newest = self.checkpoints.latest
        raise NonFiniteLossError(
            f'{self.nonfinite_in_a_row} updates in a row had a non-finite '
            f'loss (run.max_nonfinite_in_a_row={limit}); stopped at train '
            f'step {self.train_steps}, env step {self.env_steps}. The newest '
            f'checkpoint, {newest or "(none)"}, was saved before them and '
            'is intact; lower the learning rates or check the rewards and '
            'observations for inf/NaN.')
      return
    self.nonfinite_in_a_row = 0
    metrics = dict(metrics)
    metrics.setdefault('learner/nonfinite', 0.0)
    averager.add(metrics)

  # -- evaluation and logging -----------------------------------------------

  def evaluate(self) -> Dict[str, float]:
    """Mean and std return of `eval_episodes` deterministic episodes."""
    c = self.config
    envs = make_vector_env(c.env.id, c.run.eval_episodes, 'sync',
                           c.env.max_episode_steps, options=c.env)
    acting = collector_lib.PolicyActing(self.agent.policy,
                                        c.run.eval_episodes)
    # The first episode's image observations, as a TensorBoard video.
    frames = {o.key: [] for o in self.spec.observations if o.is_image}
    try:
      returns = collector_lib.evaluate_policy(
          envs, self.spec, acting.act_deterministic,
          seed=c.seed + 10_000 + self.env_steps, frames=frames)
    finally:
      envs.close()
    tensorboard_images.write_episode_videos(self.writer, frames,
                                            self.env_steps)
    return {'eval/return': float(returns.mean()),
            'eval/return_std': float(returns.std())}

  def _evaluation_due(self) -> bool:
    """A multiple of run.eval_every was passed since the last evaluation,
    or the run has reached its end unevaluated."""
    every = self.config.run.eval_every
    if not every or self.env_steps <= self.last_eval:
      return False
    return (self.env_steps // every > self.last_eval // every or
            self.env_steps >= self.config.run.total_env_steps)

  def _evaluate_and_record(self, start: float) -> Dict[str, float]:
    """Evaluates; appends the row to evaluations.csv and TensorBoard."""
    self.last_eval = self.env_steps
    result = self.evaluate()
    row = {'env_steps': self.env_steps, **result,
           'wall_seconds': time.time() - start,
           'update_ms': self._update_ms_since_last_evaluation()}
    self.eval_history.append(row)
    self.evaluations.append(row)
    write_scalars(self.writer, result, self.env_steps)
    return result

  def _write_histograms(self) -> None:
    """Histograms of the last batch's latents and of the actions since."""
    write_histograms(self.writer, run_histograms(
        self.agent.world_model, self.spec, self._last_batch, self._actions),
                     self.env_steps)
    self._actions = []

  def _write_image(self) -> None:
    if self._last_batch is not None:
      tensorboard_images.write_open_loop_image(
          self.writer, self.agent.world_model, self._last_batch,
          self.env_steps)
      tensorboard_images.write_open_loop_videos(
          self.writer, self.agent.world_model, self._last_batch,
          self.env_steps)

  # -- the loop -------------------------------------------------------------

  def run(self) -> Dict[str, float]:
    """Trains until `run.total_env_steps`; returns the last metrics.

    Raises:
      NonFiniteLossError: `run.max_nonfinite_in_a_row` updates in a row
        had a non-finite loss. No checkpoint is written after the first
        of them.
    """
    c = self.config
    envs = make_vector_env(c.env.id, c.env.num_envs, c.env.vectorization,
                           c.env.max_episode_steps, options=c.env)
    collector = collector_lib.Collector(envs, self.spec,
                                        seed=self._reset_seed())
    averager = ScalarAverager()
    n = collector.num_envs
    first_env_step = self.env_steps
    last_eval_return: Optional[float] = None
    summary: Dict[str, float] = {}
    start = time.time()
    bar = self._bar = tqdm.tqdm(
        total=c.run.total_env_steps,
        initial=min(self.env_steps, c.run.total_env_steps),
        disable=not self.progress, unit='step', dynamic_ncols=True)
    if self.eval_history:
      last_eval_return = self.eval_history[-1]['eval/return']
    keep_actions = bool(c.run.histogram_every)
    choose = self._action_chooser(collector, averager)
    try:
      while self.env_steps < c.run.total_env_steps:
        self._collect(collector, choose, averager, keep_actions)
        if (self.env_steps >= c.run.prefill_steps and
            self.replay.can_sample(c.replay.batch_size)):
          self.updates_due += c.run.train_ratio * n
          self._train_due(averager)

        if self._evaluation_due():
          result = self._evaluate_and_record(start)
          last_eval_return = result['eval/return']
          summary.update(result)

        if self.env_steps - self.last_log >= c.run.log_every:
          summary.update(self._log(averager, start, first_env_step,
                                   last_eval_return))
        self._write_pictures_due()
      # A resumed run whose data on disk had reached the end: the updates
      # owed for it, then its final evaluation.
      if self.replay.can_sample(c.replay.batch_size):
        self._train_due(averager)
      if self._evaluation_due():
        summary.update(self._evaluate_and_record(start))
    finally:
      self.profiler.stop()
      bar.close()
      self._bar = None
      envs.close()
      self.writer.flush()
    return self._finish(summary, start)

  def _action_chooser(self, collector, averager: ScalarAverager):
    """obs {key: [N, *shape]} -> agent actions: random during prefill, then
    the policy's."""
    n = collector.num_envs
    # The policy's state per environment. Prefill's random steps leave it
    # at the initial state, from which the first policy step starts as an
    # episode start does (and as every replayed training window does).
    acting = collector_lib.PolicyActing(self.agent.policy, n)

    def choose(obs):
      if self.env_steps < self.config.run.prefill_steps:
        return collector_lib.random_actions(self.rng, self.spec, n)
      action, stats = acting.act(obs, collector.is_first,
                                 self._next_acting_seed())
      averager.add(stats)  # acting/uncertain_steps with acting.uncertainty
      return action

    return choose

  def _collect(self, collector, choose, averager: ScalarAverager,
               keep_actions: bool) -> None:
    """One step of every environment, stored; finished episodes counted."""
    record = collector.step(choose)
    self.replay.add_batch(record)
    self.env_steps += collector.num_envs
    self._bar.update(collector.num_envs)
    if keep_actions:
      live = ~np.asarray(record['is_last'])  # no action on a last step
      self._actions.append(np.asarray(record['action'])[live])
    for episode in collector.pop_finished():
      self.episodes += 1
      averager.add({'train/episode_return': episode['return'],
                    'train/episode_length': episode['length']})

  def _log(self, averager: ScalarAverager, start: float, first_env_step: int,
           last_eval_return: Optional[float]) -> Dict[str, float]:
    """Writes the averaged scalars and the run's counters; returns them."""
    elapsed = time.time() - start
    scalars = averager.flush()
    scalars['perf/fps'] = ((self.env_steps - first_env_step) /
                           max(elapsed, 1e-9))
    scalars['perf/train_steps'] = float(self.train_steps)
    scalars['train/episodes'] = float(self.episodes)
    scalars['train/nonfinite_updates'] = float(self.nonfinite_total)
    scalars['replay/steps'] = float(self.replay.num_steps)
    scalars['replay/episodes'] = float(self.replay.num_episodes)
    write_scalars(self.writer, scalars, self.env_steps)
    self.last_log = self.env_steps
    postfix = {'fps': f'{scalars["perf/fps"]:.0f}'}
    if last_eval_return is not None:
      postfix['eval'] = f'{last_eval_return:.1f}'
    self._bar.set_postfix(postfix)
    return scalars

  def _write_pictures_due(self) -> None:
    """Histograms and the prediction image, each when its interval passed."""
    c = self.config
    if (c.run.histogram_every and
        self.env_steps - self.last_histogram >= c.run.histogram_every):
      self.last_histogram = self.env_steps
      self._write_histograms()
    if (c.run.image_every and self._last_batch is not None and
        self.env_steps - self.last_image >= c.run.image_every):
      self.last_image = self.env_steps
      self._write_image()

  def _finish(self, summary: Dict[str, float], start: float
              ) -> Dict[str, float]:
    """The final checkpoint (unless updates are failing) and summary."""
    if self.eval_history and 'eval/return' not in summary:
      last = self.eval_history[-1]
      summary.update({k: last[k] for k in ('eval/return', 'eval/return_std')
                      if k in last})
    if self.nonfinite_in_a_row:
      warnings.warn(
          f'The last {self.nonfinite_in_a_row} updates had a non-finite '
          'loss; the final checkpoint is not written.', RuntimeWarning)
    else:
      self.save_checkpoint()
    summary['env_steps'] = self.env_steps
    summary['wall_seconds'] = time.time() - start
    return summary
