"""The training loop: collect, store, update, evaluate, log, checkpoint.

Running a Trainer on a logdir that already holds a run resumes it: the
newest readable checkpoint is restored (agent, optimizers, counters, random
generators), the finished episodes on disk are reloaded into the replay,
and counting goes on from the checkpoint's env step (see
`wm_tf.runtime.checkpoints`). Steps of episodes that were unfinished when
the run stopped are lost; episodes finished after the checkpoint stay on
disk and in the replay.
"""

from __future__ import annotations

import contextlib
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
from wm_tf.runtime import tensorboard_images
from wm_tf.runtime.environments import inspect_env, make_vector_env
from wm_tf.runtime.metrics import (ScalarAverager, write_histograms,
                                   write_scalars)
from wm_tf.runtime.replay import (SequenceReplay, default_step_spec,
                                  list_episode_files)


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


class Trainer:
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
    self.batch_size = config.replay.batch_size  # sampled per update
    if self.strategy is not None:
      try:
        self.batch_size = distribution.local_batch_size(
            self.strategy, config.replay.batch_size)
      except ValueError as e:
        raise config_lib.ConfigError(str(e)) from None
    self.logdir = logdir
    self.progress = progress
    self.profile_steps = profile_steps
    env = config.env
    # Fails here, before anything is built, on a bad id or space.
    self.spec = inspect_env(env.id, env.max_episode_steps)
    self.config_changes = checkpoints_lib.check_saved_config(
        logdir, config, allow_config_change)
    keras.utils.set_random_seed(config.seed)
    os.makedirs(logdir, exist_ok=True)
    self.config_text = config_lib.to_yaml(config)
    checkpoints_lib.write_text_atomically(
        os.path.join(logdir, 'config.yaml'), self.config_text)

    self.agent: Agent = build_agent(config, self.spec, self.strategy)
    rc = config.replay
    self.replay = SequenceReplay(
        default_step_spec(self.spec.observation_dim, self.spec.action_dim),
        capacity=max(rc.capacity, rc.sequence_length * env.num_envs),
        sequence_length=rc.sequence_length, num_streams=env.num_envs,
        seed=config.seed, directory=os.path.join(logdir, 'episodes'))
    self.rng = np.random.default_rng(config.seed)
    self.seeds = tf.random.Generator.from_seed(config.seed)
    # One compiled call per seed: the same draws as the three eager ops it
    # replaces, in 110 us instead of 280 (CartPole acts in about 310 us).
    self._next_seed = tf.function(
        lambda: tf.cast(self.seeds.make_seeds(1)[:, 0], tf.int32))
    # Run state saved in every checkpoint (with the agent and `seeds`).
    self.env_steps = 0
    self.episodes = 0  # finished training episodes
    self.updates_due = 0.0  # fractional updates carried to the next step
    self.last_log = self.last_eval = 0  # env steps of the last write
    self.last_histogram = self.last_image = 0
    self.nonfinite_total = 0  # updates skipped for a non-finite loss
    self._update_seconds = []  # wall seconds per update since the last eval
    self.writer = tf.summary.create_file_writer(logdir)
    self.checkpoints = checkpoints_lib.RunCheckpoint(
        os.path.join(logdir, 'checkpoints'), self.agent,
        values=self._state_values(), trackables={'seeds': self.seeds},
        max_to_keep=config.run.checkpoints_to_keep)
    self.eval_history: List[Dict[str, float]] = []
    self.nonfinite_in_a_row = 0
    self._last_batch: Optional[Dict[str, np.ndarray]] = None
    self._actions: List[np.ndarray] = []  # env actions since the histogram
    self._profiling = False
    self._compile_train_first = self.strategy is None and config.run.jit
    self.resumed_from: Optional[checkpoints_lib.Restored] = None
    self.reloaded_steps = self._resume()
    self._last_saved = self.train_steps if self.resumed_from else None

  # -- state ----------------------------------------------------------------

  @property
  def train_steps(self) -> int:
    return int(self.agent.learner.train_steps.numpy())

  def _state_values(self) -> Dict[str, object]:
    return {
        'env_steps': self.env_steps,
        'episodes': self.episodes,
        'updates_due': float(self.updates_due),
        'last_log': self.last_log,
        'last_eval': self.last_eval,
        'last_histogram': self.last_histogram,
        'last_image': self.last_image,
        'nonfinite_updates': self.nonfinite_total,
        'action_rng': checkpoints_lib.rng_state_text(self.rng),
        'replay_rng': checkpoints_lib.rng_state_text(self.replay.rng),
        'config': self.config_text,
    }

  def _resume(self) -> int:
    """Restores the newest checkpoint and reloads episodes; returns steps."""
    restored = self.checkpoints.restore_newest()
    if restored is not None:
      self.checkpoints.discard(restored.skipped)
      v = restored.values
      self.env_steps = v['env_steps']
      self.episodes = v['episodes']
      self.updates_due = v['updates_due']
      self.last_log, self.last_eval = v['last_log'], v['last_eval']
      self.last_histogram, self.last_image = (v['last_histogram'],
                                              v['last_image'])
      self.nonfinite_total = v['nonfinite_updates']
      checkpoints_lib.set_rng_state(self.rng, v['action_rng'])
      checkpoints_lib.set_rng_state(self.replay.rng, v['replay_rng'])
      self.resumed_from = restored
    if list_episode_files(self.replay.directory):
      return self.replay.load()
    return 0

  def save_checkpoint(self) -> str:
    """Saves `ckpt-<train step>` with the agent and the run state."""
    self._last_saved = self.train_steps
    return self.checkpoints.save(self.train_steps, self._state_values())

  def _reset_seed(self) -> int:
    """Seed of the environments' reset.

    A new run uses the config seed. A resumed run mixes in the number of
    episodes on disk, so it does not replay (and store again) the episodes
    that a run killed after its checkpoint already stored.
    """
    stored = len(list_episode_files(self.replay.directory))
    if stored == 0:
      return self.config.seed
    sequence = np.random.SeedSequence([self.config.seed, stored])
    return int(sequence.generate_state(1)[0] >> 1)

  # -- updates --------------------------------------------------------------

  def _seed(self) -> tf.Tensor:
    """The next int32 [2] stateless seed of an update or an acting step."""
    return self._next_seed()

  def _batch(self) -> Dict[str, tf.Tensor]:
    sample = self.replay.sample(self.batch_size)
    self._last_batch = sample
    if self.strategy is not None:
      return distribution.distribute_batch(self.strategy, sample)
    return {k: tf.convert_to_tensor(v) for k, v in sample.items()}

  def _update(self, averager: ScalarAverager) -> None:
    start = time.perf_counter()
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
    self._update_seconds.append(time.perf_counter() - start)

  def _update_ms_since_last_evaluation(self) -> float:
    """Median wall ms of an update (replay sampling included) since the
    last evaluation: the median ignores the few compiling calls."""
    times, self._update_seconds = self._update_seconds, []
    return 1e3 * float(np.median(times)) if times else float('nan')

  def _checkpoint_due(self) -> bool:
    """A multiple of run.checkpoint_every was reached since the last save.

    Never while non-finite updates are being skipped: the newest
    checkpoint stays the last good one.
    """
    every = self.config.run.checkpoint_every
    if not every or self.nonfinite_in_a_row:
      return False
    return self.train_steps // every > (self._last_saved or 0) // every

  def _record_update(self, metrics, averager: ScalarAverager) -> None:
    """Averages an update's metrics; counts and checks non-finite ones."""
    if update_was_nonfinite(metrics):
      self.nonfinite_in_a_row += 1
      self.nonfinite_total += 1
      averager.add({'learner/nonfinite': 1.0})
      limit = self.config.run.max_nonfinite_in_a_row
      if self.nonfinite_in_a_row >= limit:
        newest = self.checkpoints.manager.latest_checkpoint
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

  def _profile_context(self, step: int):
    """Starts/stops the profiler around train step `step` as asked."""
    if self.profile_steps is None:
      return contextlib.nullcontext()
    start, stop = self.profile_steps
    if not self._profiling and start <= step < stop:
      tf.profiler.experimental.start(self.logdir)
      self._profiling = True
    elif self._profiling and step >= stop:
      self._stop_profiler()
    if self._profiling:
      return tf.profiler.experimental.Trace('train', step_num=step, _r=1)
    return contextlib.nullcontext()

  def _stop_profiler(self) -> None:
    if self._profiling:
      tf.profiler.experimental.stop()
      self._profiling = False

  # -- evaluation and logging -----------------------------------------------

  def evaluate(self) -> Dict[str, float]:
    """Mean and std return of `eval_episodes` deterministic episodes."""
    c = self.config
    envs = make_vector_env(c.env.id, c.run.eval_episodes, 'sync',
                           c.env.max_episode_steps)
    acting = collector_lib.PolicyActing(self.agent.policy,
                                        c.run.eval_episodes)
    try:
      returns = collector_lib.evaluate_policy(
          envs, self.spec, acting.act_deterministic,
          seed=c.seed + 10_000 + self.env_steps)
    finally:
      envs.close()
    return {'eval/return': float(returns.mean()),
            'eval/return_std': float(returns.std())}

  def _append_evaluation(self, row: Dict[str, float]) -> None:
    """One line per evaluation in logdir/evaluations.csv."""
    path = os.path.join(self.logdir, 'evaluations.csv')
    new = not os.path.exists(path)
    with open(path, 'a') as f:
      if new:
        f.write(','.join(row) + '\n')
      f.write(','.join(str(v) for v in row.values()) + '\n')

  def _write_histograms(self) -> None:
    """Histograms of the last batch's latents and of the actions since.

    Latents come from `latent_states`, which carries a recurrent
    representation's history along each sequence.
    """
    values = {}
    if self._last_batch is not None:
      latent = self.agent.world_model.latent_states(
          {k: tf.convert_to_tensor(self._last_batch[k])
           for k in ('observation', 'action', 'is_first')})
      values['latent/state'] = latent.numpy()
    if self._actions:
      actions = np.concatenate(self._actions)
      if self.spec.discrete:  # the index of the one-hot action
        values['train/action'] = np.argmax(actions, -1)
      else:
        values['train/action'] = actions
        for i in range(min(self.spec.action_dim, 8)):
          values[f'train/action_{i}'] = actions[:, i]
    write_histograms(self.writer, values, self.env_steps)
    self._actions = []

  def _write_image(self) -> None:
    if self._last_batch is not None:
      tensorboard_images.write_open_loop_image(
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
                           c.env.max_episode_steps)
    collector = collector_lib.Collector(envs, self.spec,
                                        seed=self._reset_seed())
    averager = ScalarAverager()
    n = collector.num_envs
    first_env_step = self.env_steps
    last_eval_return: Optional[float] = None
    summary: Dict[str, float] = {}
    start = time.time()
    bar = tqdm.tqdm(total=c.run.total_env_steps, initial=self.env_steps,
                    disable=not self.progress, unit='step', dynamic_ncols=True)
    keep_actions = bool(c.run.histogram_every)
    # The policy's state per environment. Prefill's random steps leave it
    # at the initial state, from which the first policy step starts as an
    # episode start does (and as every replayed training window does).
    acting = collector_lib.PolicyActing(self.agent.policy, n)

    def choose(obs):
      if self.env_steps < c.run.prefill_steps:
        return collector_lib.random_actions(self.rng, self.spec, n)
      action, stats = acting.act(obs, collector.is_first, self._seed())
      averager.add(stats)  # acting/uncertain_steps with acting.uncertainty
      return action

    try:
      while self.env_steps < c.run.total_env_steps:
        record = collector.step(choose)
        self.replay.add_batch(record)
        self.env_steps += n
        bar.update(n)
        if keep_actions:
          live = ~np.asarray(record['is_last'])  # no action on a last step
          self._actions.append(np.asarray(record['action'])[live])
        for episode in collector.pop_finished():
          self.episodes += 1
          averager.add({'train/episode_return': episode['return'],
                        'train/episode_length': episode['length']})

        if (self.env_steps >= c.run.prefill_steps and
            self.replay.can_sample(c.replay.batch_size)):
          self.updates_due += c.run.train_ratio * n
          while self.updates_due >= 1.0:
            self.updates_due -= 1.0
            with self._profile_context(self.train_steps):
              self._update(averager)
            if self._checkpoint_due():
              self.save_checkpoint()

        if c.run.eval_every and (
            self.env_steps - self.last_eval >= c.run.eval_every or
            self.env_steps >= c.run.total_env_steps):
          self.last_eval = self.env_steps
          result = self.evaluate()
          last_eval_return = result['eval/return']
          row = {'env_steps': self.env_steps, **result,
                 'wall_seconds': time.time() - start,
                 'update_ms': self._update_ms_since_last_evaluation()}
          self.eval_history.append(row)
          self._append_evaluation(row)
          write_scalars(self.writer, result, self.env_steps)
          summary.update(result)

        if self.env_steps - self.last_log >= c.run.log_every:
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
          summary.update(scalars)
          self.last_log = self.env_steps
          postfix = {'fps': f'{scalars["perf/fps"]:.0f}'}
          if last_eval_return is not None:
            postfix['eval'] = f'{last_eval_return:.1f}'
          bar.set_postfix(postfix)

        if (c.run.histogram_every and
            self.env_steps - self.last_histogram >= c.run.histogram_every):
          self.last_histogram = self.env_steps
          self._write_histograms()

        if (c.run.image_every and self._last_batch is not None and
            self.env_steps - self.last_image >= c.run.image_every):
          self.last_image = self.env_steps
          self._write_image()
    finally:
      self._stop_profiler()
      bar.close()
      envs.close()
      self.writer.flush()
    if self.nonfinite_in_a_row:
      warnings.warn(
          f'The last {self.nonfinite_in_a_row} updates had a non-finite '
          'loss; the final checkpoint is not written.', RuntimeWarning)
    else:
      self.save_checkpoint()
    summary['env_steps'] = self.env_steps
    summary['wall_seconds'] = time.time() - start
    return summary
