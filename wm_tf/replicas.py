"""Cross-replica arithmetic for code that may run once per replica.

Under a `tf.distribute` strategy with R > 1 replicas the learner's update
runs once per replica (`strategy.run`), each replica on its shard of the
global batch. These functions let that code compute what one device would
compute on the whole batch; without a strategy (or TensorFlow's default
one), and in cross-replica context, each is the plain single-device
operation, adding no ops (`mean`, `total`, `gather` and `per_replica_seed`
also with a one-replica strategy):

  * `mean(x)` / `total(x)`: all-reduce over replicas (nested structures);
  * `gather(x)`: concatenation of every replica's x along axis 0 (replica
    order), e.g. to take percentiles over the global batch;
  * `assign(variable, value)`: set a mirrored variable to a value that
    every replica computed identically (Keras weights cannot be assigned
    in a replica context, even with one replica);
  * `cond_apply(ok, fn, args)`: run `fn(*args)` where the scalar `ok` is
    true, for an `fn` that itself synchronises replicas (a Keras optimizer
    step). A `tf.cond` in a replica context cannot hold a `merge_call`, so
    strategies that need one take the decision in cross-replica context;
  * `per_replica_seed(seed)`: a distinct stateless seed per replica.

Loss convention (see `wm_tf.losses.masked_mean`): each replica computes
means over its own shard, with masked means over the global mask count;
with equal shards, the mean over replicas of a replica's loss is then the
loss of the global batch, and `mean` of the replicas' gradients its
gradient.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple

import keras
import tensorflow as tf


def _replica_context() -> Optional[tf.distribute.ReplicaContext]:
  """The replica context if there is more than one replica, else None."""
  context = tf.distribute.get_replica_context()
  if context is None or context.num_replicas_in_sync == 1:
    return None
  return context


def _strategy_replica_context() -> Optional[tf.distribute.ReplicaContext]:
  """The replica context of a strategy (even of one replica), else None.

  Variables created in a strategy's scope are distributed (mirrored) even
  on one device, and Keras optimizers synchronise under any strategy.
  """
  if not tf.distribute.has_strategy():
    return None
  return tf.distribute.get_replica_context()


def num_replicas() -> int:
  """R of the enclosing replica context (1 outside one)."""
  context = _replica_context()
  return 1 if context is None else context.num_replicas_in_sync


def mean(values):
  """The mean over replicas of a tensor or nested structure of tensors."""
  context = _replica_context()
  if context is None:
    return values
  return context.all_reduce(tf.distribute.ReduceOp.MEAN, values)


def total(values):
  """The sum over replicas of a tensor or nested structure of tensors."""
  context = _replica_context()
  if context is None:
    return values
  return context.all_reduce(tf.distribute.ReduceOp.SUM, values)


def gather(values: tf.Tensor) -> tf.Tensor:
  """Every replica's `values` [N_r, ...] concatenated: [sum_r N_r, ...]."""
  context = _replica_context()
  if context is None:
    return values
  return context.all_gather(values, axis=0)


def assign(variable, value) -> None:
  """variable <- value, where every replica computed the same value.

  Mirrored variables (Keras weights, aggregation 'none') refuse
  assignment in a replica context: the update goes through cross-replica
  context, each device's copy taking its own replica's value.
  """
  context = _strategy_replica_context()
  if context is None:
    variable.assign(value)
    return
  target = variable.value if isinstance(variable, keras.Variable) else variable

  def update(strategy, value):
    strategy.extended.update(
        target, lambda v, x: v.assign(tf.cast(x, v.dtype)), args=(value,),
        group=False)

  context.merge_call(update, args=(value,))


def cond_apply(ok: tf.Tensor, fn: Callable[..., None],
               args: Sequence = ()) -> tf.Tensor:
  """Runs `fn(*args)` (no outputs) where `ok`; returns `ok`.

  `ok` (scalar bool) must be the same in every replica; `fn` may
  synchronise replicas (e.g. `optimizer.apply_gradients`, which all-reduces
  and merges). Strategies that implement such synchronisation with
  `merge_call` (MirroredStrategy and MultiWorkerMirroredStrategy outside
  XLA on GPUs) cannot branch around it in a replica context: there the
  branch is taken in cross-replica context on the first replica's `ok`,
  and `fn` runs once per replica with that replica's `args`.
  """
  args = tuple(args)

  def run():
    fn(*args)
    return tf.constant(True)

  context = _strategy_replica_context()
  if (context is None or
      tf.__internal__.distribute.strategy_supports_no_merge_call()):
    return tf.cond(ok, run, lambda: tf.constant(False))

  def branch(strategy, ok, *args):
    first = strategy.experimental_local_results(ok)[0]

    def apply():
      strategy.extended.call_for_each_replica(fn, args=args)
      return tf.constant(True)

    return tf.cond(first, apply, lambda: tf.constant(False))

  context.merge_call(branch, args=(ok,) + args)
  return ok


def per_replica_seed(seed: tf.Tensor) -> tf.Tensor:
  """int32 [2]: `seed` itself with one replica, else one per replica.

  Replicas given the same seed would draw the same noise for different
  examples of the global batch; mixing in the replica id decorrelates
  them while keeping one-device runs unchanged.
  """
  context = _replica_context()
  if context is None:
    return seed
  replica = tf.cast(context.replica_id_in_sync_group, tf.int32)
  return tf.random.experimental.stateless_fold_in(seed, replica)


def clipped_update(optimizer, tape: tf.GradientTape, loss: tf.Tensor,
                   variables: Sequence, clip_norm: float
                   ) -> Tuple[tf.Tensor, tf.Tensor]:
  """One guarded optimizer step on d loss / d variables.

  The gradient is averaged over replicas, clipped to global norm
  `clip_norm` and applied only if the loss and the norm are finite (the
  same decision in every replica). Variables the loss does not reach get
  a zero gradient.

  Returns:
    (applied: scalar bool, norm: scalar, the global norm before clipping).
  """
  variables = list(variables)
  grads = tape.gradient(loss, variables)
  grads = mean([tf.zeros_like(v) if g is None else g
                for g, v in zip(grads, variables)])
  grads, norm = tf.clip_by_global_norm(grads, clip_norm)
  ok = tf.reduce_all([tf.reduce_all(tf.math.is_finite(t))
                      for t in (mean(loss), norm)])
  return apply_if(optimizer, ok, grads, variables), norm


def apply_if(optimizer, ok: tf.Tensor, grads, variables) -> tf.Tensor:
  """Applies `grads` only where the scalar bool `ok`; returns `ok`.

  With R > 1 replicas, `ok` and `grads` must be the global ones (the same
  in every replica). A Keras optimizer called in a replica context sums
  the replicas' gradients, so each replica hands it grads / R.
  """
  variables = list(variables)
  count = num_replicas()
  if count > 1:
    grads = [g / float(count) for g in grads]
  return cond_apply(
      ok, lambda *g: optimizer.apply_gradients(zip(g, variables)), grads)
