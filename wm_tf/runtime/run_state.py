"""The run state a Trainer checkpoints, and how a resumed run picks it up.

`CheckpointedRun` is the Trainer's base: it saves the counters, the
generators' states and the config with the agent (`save_checkpoint`),
decides when a save is due, and on start restores the newest checkpoint
and reloads the episodes on disk (`_resume`; see `wm_tf.runtime.trainer`
for what the counters then mean).
"""

from __future__ import annotations

import time
from typing import Dict

import numpy as np

from wm_tf.runtime import checkpoints as checkpoints_lib
from wm_tf.runtime import run_log
from wm_tf.runtime.episode_files import list_episode_files


class CheckpointedRun:
  """Checkpointing of a Trainer's run state.

  The Trainer sets what these methods read: config, logdir, agent, replay,
  rng, collect_seed, checkpoints (a `RunCheckpoint`), evaluations, the
  counters of `_state_values` and `nonfinite_in_a_row`.
  """

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
    """Restores the newest checkpoint, reloads the episodes on disk and
    sets the counters from them; returns the steps reloaded."""
    self.checkpoints.remove_interrupted_saves()
    self.replay.remove_interrupted_writes()
    restored = self.checkpoints.restore_newest()
    checkpoint_env_steps = 0
    if restored is not None:
      self.checkpoints.discard(restored.skipped)
      v = restored.values
      checkpoint_env_steps = v['env_steps']
      self.updates_due = v['updates_due']
      self.last_log, self.last_eval = v['last_log'], v['last_eval']
      self.last_histogram, self.last_image = (v['last_histogram'],
                                              v['last_image'])
      self.nonfinite_total = v['nonfinite_updates']
      checkpoints_lib.set_rng_state(self.rng, v['action_rng'])
      checkpoints_lib.set_rng_state(self.replay.rng, v['replay_rng'])
      self.resumed_from = restored
    stored = self.replay.load() if list_episode_files(
        self.replay.directory) else 0
    if restored is None and stored == 0:
      run_log.mark_session_start(self.logdir, 0)  # a new run
      return 0
    self.env_steps = stored
    self.episodes = self.replay.num_episodes
    # The updates owed for the data stored after the checkpoint (or taken
    # back for steps the checkpoint counted and the disk lost).
    prefill = self.config.run.prefill_steps
    self.updates_due += self.config.run.train_ratio * (
        max(stored, prefill) - max(checkpoint_env_steps, prefill))
    written = len(self.evaluations.rows())
    kept = self.evaluations.keep_until(self.last_eval)
    self.dropped_evaluations = written - len(kept)
    self.eval_history = kept
    # Every record written before the checkpoint has a step at or below
    # these; every one written after it, a step above.
    newest_record = max(self.last_log, self.last_eval, self.last_histogram,
                        self.last_image) if restored else -1
    run_log.mark_session_start(self.logdir, newest_record + 1)
    return stored

  def save_checkpoint(self) -> str:
    """Saves `ckpt-<train step>` with the agent and the run state.

    The unfinished episodes' steps go to disk first, so the data on disk
    holds every env step the checkpoint counts.
    """
    self.replay.save_open_episodes()
    self._last_saved = self.train_steps
    self._last_saved_time = time.monotonic()
    return self.checkpoints.save(self.train_steps, self._state_values())

  def _reset_seed(self) -> int:
    """Seed of the environments' reset.

    A new run uses `collect_seed` (the config seed but on workers after the
    first). A resumed run mixes in the number of episodes on disk, so it
    does not replay (and store again) the episodes that a run killed after
    its checkpoint already stored.
    """
    stored = len(list_episode_files(self.replay.directory))
    if stored == 0:
      return self.collect_seed
    sequence = np.random.SeedSequence([self.collect_seed, stored])
    return int(sequence.generate_state(1)[0] >> 1)

  def _checkpoint_due(self) -> bool:
    """A multiple of run.checkpoint_every train steps was reached, or
    run.checkpoint_seconds have passed, since the last save.

    Never while non-finite updates are being skipped: the newest
    checkpoint stays the last good one.
    """
    if self.nonfinite_in_a_row:
      return False
    every = self.config.run.checkpoint_every
    if every and self.train_steps // every > (self._last_saved or 0) // every:
      return True
    seconds = self.config.run.checkpoint_seconds
    return bool(seconds) and (
        time.monotonic() - self._last_saved_time >= seconds)
