"""The training loop: collect, store, update, evaluate, log, checkpoint."""

from __future__ import annotations

import os
import time
from typing import Dict, List, Optional

import keras
import numpy as np
import tensorflow as tf
import tqdm

from wm_tf import config as config_lib
from wm_tf.agent.builder import Agent, build_agent
from wm_tf.runtime import collector as collector_lib
from wm_tf.runtime.environments import inspect_env, make_vector_env
from wm_tf.runtime.metrics import ScalarAverager, write_scalars
from wm_tf.runtime.replay import SequenceReplay, default_step_spec


class Trainer:
  """Trains one agent on one environment as the config says.

  Args:
    config: a validated `Config`.
    logdir: where TensorBoard events, the config, episodes and checkpoints
      go.
    progress: show a progress bar on stderr.
  """

  def __init__(self, config: config_lib.Config, logdir: str,
               progress: bool = True):
    self.config = config
    self.logdir = logdir
    self.progress = progress
    env = config.env
    # Fails here, before anything is built, on a bad id or space.
    self.spec = inspect_env(env.id, env.max_episode_steps)
    keras.utils.set_random_seed(config.seed)
    os.makedirs(logdir, exist_ok=True)
    with open(os.path.join(logdir, 'config.yaml'), 'w') as f:
      f.write(config_lib.to_yaml(config))

    self.agent: Agent = build_agent(config, self.spec)
    rc = config.replay
    self.replay = SequenceReplay(
        default_step_spec(self.spec.observation_dim, self.spec.action_dim),
        capacity=max(rc.capacity, rc.sequence_length * env.num_envs),
        sequence_length=rc.sequence_length, num_streams=env.num_envs,
        seed=config.seed, directory=os.path.join(logdir, 'episodes'))
    self.rng = np.random.default_rng(config.seed)
    self.seeds = tf.random.Generator.from_seed(config.seed)
    self.env_steps = 0
    self.writer = tf.summary.create_file_writer(logdir)
    self.checkpoint = tf.train.Checkpoint(
        world_model=self.agent.world_model, actor=self.agent.actor,
        critic=self.agent.critic, slow_critic=self.agent.slow_critic,
        learner=self.agent.learner)
    self.checkpoints = tf.train.CheckpointManager(
        self.checkpoint, os.path.join(logdir, 'checkpoints'),
        max_to_keep=config.run.checkpoints_to_keep)
    self.eval_history: List[Dict[str, float]] = []

  def _seed(self) -> tf.Tensor:
    return tf.cast(self.seeds.make_seeds(1)[:, 0], tf.int32)

  def _batch(self) -> Dict[str, tf.Tensor]:
    return {k: tf.convert_to_tensor(v)
            for k, v in self.replay.sample(self.config.replay.batch_size).items()}

  def _update(self, averager: ScalarAverager) -> None:
    # The warmup schedule (config `warmup`) decides what this step updates.
    metrics = self.agent.warmup.update(self.agent.learner, self._batch,
                                       self._seed, self.env_steps)
    averager.add(metrics)

  def evaluate(self) -> Dict[str, float]:
    """Mean and std return of `eval_episodes` deterministic episodes."""
    c = self.config
    envs = make_vector_env(c.env.id, c.run.eval_episodes, 'sync',
                           c.env.max_episode_steps)
    try:
      returns = collector_lib.evaluate_policy(
          envs, self.spec,
          lambda obs: self.agent.policy.act_deterministic(obs).numpy(),
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

  def run(self) -> Dict[str, float]:
    """Trains for `run.total_env_steps`; returns the last metrics."""
    c = self.config
    envs = make_vector_env(c.env.id, c.env.num_envs, c.env.vectorization,
                           c.env.max_episode_steps)
    collector = collector_lib.Collector(envs, self.spec, seed=c.seed)
    averager = ScalarAverager()
    n = collector.num_envs
    updates_due = 0.0
    last_log = last_eval = 0
    last_eval_return: Optional[float] = None
    summary: Dict[str, float] = {}
    start = time.time()
    bar = tqdm.tqdm(total=c.run.total_env_steps, disable=not self.progress,
                    unit='step', dynamic_ncols=True)

    def choose(obs):
      if self.env_steps < c.run.prefill_steps:
        return collector_lib.random_actions(self.rng, self.spec, n)
      action, stats = self.agent.policy.act_with_stats(obs, self._seed())
      averager.add(stats)  # acting/uncertain_steps with acting.uncertainty
      return action.numpy()

    try:
      while self.env_steps < c.run.total_env_steps:
        record = collector.step(choose)
        self.replay.add_batch(record)
        self.env_steps += n
        bar.update(n)
        for episode in collector.pop_finished():
          averager.add({'train/episode_return': episode['return'],
                        'train/episode_length': episode['length']})

        if (self.env_steps >= c.run.prefill_steps and
            self.replay.can_sample(c.replay.batch_size)):
          updates_due += c.run.train_ratio * n
          while updates_due >= 1.0:
            self._update(averager)
            updates_due -= 1.0
            train_steps = int(self.agent.learner.train_steps.numpy())
            if (c.run.checkpoint_every and
                train_steps % c.run.checkpoint_every == 0):
              self.checkpoints.save(checkpoint_number=train_steps)

        if c.run.eval_every and (
            self.env_steps - last_eval >= c.run.eval_every or
            self.env_steps >= c.run.total_env_steps):
          last_eval = self.env_steps
          result = self.evaluate()
          last_eval_return = result['eval/return']
          row = {'env_steps': self.env_steps, **result,
                 'wall_seconds': time.time() - start}
          self.eval_history.append(row)
          self._append_evaluation(row)
          write_scalars(self.writer, result, self.env_steps)
          summary.update(result)

        if self.env_steps - last_log >= c.run.log_every:
          elapsed = time.time() - start
          scalars = averager.flush()
          scalars['perf/fps'] = self.env_steps / max(elapsed, 1e-9)
          scalars['perf/train_steps'] = float(
              self.agent.learner.train_steps.numpy())
          write_scalars(self.writer, scalars, self.env_steps)
          summary.update(scalars)
          last_log = self.env_steps
          postfix = {'fps': f'{scalars["perf/fps"]:.0f}'}
          if last_eval_return is not None:
            postfix['eval'] = f'{last_eval_return:.1f}'
          bar.set_postfix(postfix)
    finally:
      bar.close()
      envs.close()
    self.checkpoints.save(
        checkpoint_number=int(self.agent.learner.train_steps.numpy()))
    summary['env_steps'] = self.env_steps
    summary['wall_seconds'] = time.time() - start
    return summary
