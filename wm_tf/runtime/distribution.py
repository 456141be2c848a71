"""Device strategies: on which devices the learner's update runs.

Registry `STRATEGIES`, launcher flag `--strategy`:

  * 'default': `tf.distribute.get_strategy()`, TensorFlow's default
    strategy: one device, nothing replicated (the agent is built as
    without a strategy, and `run.jit` applies).
  * 'mirrored': `tf.distribute.MirroredStrategy` over this machine's GPUs,
    or over its logical CPU devices when there is no GPU. Synchronous data
    parallelism: every variable is mirrored on every device, each replica
    takes B / R sequences of the batch, gradients are averaged over
    replicas (see `wm_tf.agent.learner` and `wm_tf.replicas`).
  * 'multi_worker': `tf.distribute.MultiWorkerMirroredStrategy`, the same
    across the worker processes that the TF_CONFIG environment variable
    describes (one worker without it). Every worker runs the same command,
    with its own environments, replay and logdir, and they update in lock
    step. It must be created before any other TensorFlow op runs.
  * 'tpu': `tf.distribute.TPUStrategy` on the TPU that
    `TPUClusterResolver(tpu=address)` finds ('' for a TPU VM's own TPU, or
    a name or grpc:// address): connects to the cluster and initialises
    the TPU system first. Not tested here (no TPU).

Workers: `worker_seed(seed, strategy)` is the seed a worker collects
with (environment resets, random prefill actions, replay sampling, acting
draws): worker 0 of TF_CONFIG keeps `seed`, so one worker collects what a
run without a cluster collects, and every other worker mixes in its index,
so that it adds episodes of its own. Model weights start from the config
seed on every worker and stay equal through the synchronised updates.

Batches: `distribute_batch(strategy, batch)` splits a replay batch along
its first axis into one shard per local replica with
`experimental_distribute_values_from_function`, synchronously in the
calling thread. A `tf.data` pipeline over `replay.sample` would sample on
a background thread while the collector writes the replay's ring buffer,
and would consume the replay's random generator ahead of the train steps
(so a resumed run would not draw the batches an uninterrupted one draws).
"""

from __future__ import annotations

from typing import Dict, Optional, Union

import numpy as np
import tensorflow as tf

from wm_tf.registry import Registry

STRATEGIES = Registry('strategy')


@STRATEGIES.register('default')
def default_strategy(tpu: Optional[str] = None) -> tf.distribute.Strategy:
  """TensorFlow's default strategy: one device, no replication."""
  del tpu
  return tf.distribute.get_strategy()


@STRATEGIES.register('mirrored')
def mirrored_strategy(tpu: Optional[str] = None) -> tf.distribute.Strategy:
  """MirroredStrategy over the local GPUs, else the logical CPU devices."""
  del tpu
  devices = tf.config.list_logical_devices('GPU')
  if not devices:
    devices = tf.config.list_logical_devices('CPU')
  return tf.distribute.MirroredStrategy([d.name for d in devices])


@STRATEGIES.register('multi_worker')
def multi_worker_strategy(tpu: Optional[str] = None
                          ) -> tf.distribute.Strategy:
  """MultiWorkerMirroredStrategy over the workers of TF_CONFIG."""
  del tpu
  return tf.distribute.MultiWorkerMirroredStrategy()


@STRATEGIES.register('tpu')
def tpu_strategy(tpu: Optional[str] = None) -> tf.distribute.Strategy:
  """TPUStrategy on the TPU at `tpu` ('' or None: the local TPU)."""
  resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or '')
  tf.config.experimental_connect_to_cluster(resolver)
  tf.tpu.experimental.initialize_tpu_system(resolver)
  return tf.distribute.TPUStrategy(resolver)


def make_strategy(name: str, tpu: Optional[str] = None
                  ) -> tf.distribute.Strategy:
  """The strategy registered as `name` ('default', 'mirrored', ...).

  Raises:
    ValueError: an unknown name (the message lists the known ones).
  """
  return STRATEGIES.get(name)(tpu=tpu)


def limit_threads(threads: int) -> None:
  """Sizes TensorFlow's intra- and inter-op thread pools to `threads`.

  For processes that share a machine's cores (several runs at once): by
  default each process makes pools as large as the machine, and the
  processes' threads then contend for the same cores. 0 keeps TensorFlow's
  default. Must run before TensorFlow executes its first op.

  Raises:
    ValueError: `threads` < 0, or TensorFlow has already started (the pools
      exist and cannot be resized).
  """
  if threads < 0:
    raise ValueError(f'threads={threads}: allowed are 0 (TensorFlow\'s '
                     'default) or a positive number of threads.')
  if threads == 0:
    return
  try:
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
  except RuntimeError:
    raise ValueError(
        f'threads={threads}: TensorFlow has already run an op in this '
        'process, so its thread pools cannot be resized; set the threads '
        'before anything else uses TensorFlow.') from None


def replicates(strategy: Optional[tf.distribute.Strategy]) -> bool:
  """Whether `strategy` is a real one (not None nor the default strategy).

  The default strategy replicates nothing: the agent then takes its
  single-device path, XLA included.
  """
  if strategy is None:
    return False
  return tf.distribute.has_strategy() or (
      strategy is not tf.distribute.get_strategy())


def local_replicas(strategy: tf.distribute.Strategy) -> int:
  """Replicas on this worker (all of them except under multi_worker)."""
  return len(strategy.extended.worker_devices)


def worker_index(strategy: Optional[tf.distribute.Strategy]) -> int:
  """This worker's place in the cluster: 0 for the chief, or without one.

  TF_CONFIG's tasks in order: the chief (if any) is 0, then worker i is
  i + 1 with a chief, else i. None, the default strategy, one machine's
  strategies and a TF_CONFIG-less MultiWorkerMirroredStrategy give 0.
  """
  resolver = getattr(strategy, 'cluster_resolver', None)
  if resolver is None or resolver.task_type not in ('chief', 'worker'):
    return 0
  if resolver.task_type == 'chief':
    return 0
  chiefs = len(resolver.cluster_spec().as_dict().get('chief', ()))
  return chiefs + int(resolver.task_id or 0)


def worker_seed(seed: Union[int, tf.Tensor],
                strategy: Optional[tf.distribute.Strategy]
                ) -> Union[int, tf.Tensor]:
  """This worker's seed of what it collects, derived from `seed`.

  Args:
    seed: a Python int (a NumPy or environment seed), or an int32 [2]
      stateless seed (an acting step's).
    strategy: the strategy the trainer runs under, or None.

  Returns:
    `seed` itself on worker 0 (see `worker_index`); on worker k > 0, for
    an int the first word of `np.random.SeedSequence([seed, k])` shifted
    to [0, 2**31), for a tensor `stateless_fold_in(seed, k)`.
  """
  index = worker_index(strategy)
  if index == 0:
    return seed
  if isinstance(seed, (int, np.integer)):
    return int(np.random.SeedSequence([int(seed), index]).generate_state(
        1)[0] >> 1)
  return tf.random.experimental.stateless_fold_in(seed, index)


def local_batch_size(strategy: tf.distribute.Strategy,
                     global_batch_size: int) -> int:
  """Sequences this worker samples per update: B * local / R.

  Raises:
    ValueError: B is not a multiple of the number of replicas R (shards of
      unequal size would weigh sequences unequally in the mean losses).
  """
  count = strategy.num_replicas_in_sync
  if global_batch_size % count:
    raise ValueError(
        f'replay.batch_size={global_batch_size} must be a multiple of the '
        f'{count} replicas of {type(strategy).__name__}.')
  return global_batch_size // count * local_replicas(strategy)


def distribute_batch(strategy: tf.distribute.Strategy,
                     batch: Dict[str, object]):
  """This worker's batch [B_local, T, ...] as one shard per local replica.

  Args:
    strategy: the strategy the learner runs under.
    batch: {key: array or tensor [B_local, T, ...]}, B_local a multiple of
      the local replicas (see `local_batch_size`).

  Returns:
    A dict of distributed values: local replica i (in replica-id order)
    gets rows [i * B_local / L, (i + 1) * B_local / L) of every array, L
    the local replicas. Pass it to the learner's compiled updates.

  Raises:
    ValueError: B_local is not a multiple of L.
  """
  local = local_replicas(strategy)
  size = int(np.shape(next(iter(batch.values())))[0])
  if size % local:
    raise ValueError(f'A batch of {size} sequences cannot be split evenly '
                     f'over {local} replicas.')
  shard = size // local
  values = {key: tf.convert_to_tensor(value) for key, value in batch.items()}

  def shard_of(context: tf.distribute.experimental.ValueContext):
    index = context.replica_id_in_sync_group % local
    return {key: value[index * shard:(index + 1) * shard]
            for key, value in values.items()}

  return strategy.experimental_distribute_values_from_function(shard_of)
