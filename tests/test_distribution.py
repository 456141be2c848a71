"""wm_tf/runtime/distribution.py and the learner under MirroredStrategy.

conftest.py splits the CPU into two logical devices, so 'mirrored' has two
replicas here. XLA is off: it cannot compile a step whose variables live on
two devices (the learner then compiles without it).
"""

import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO_ROOT, SMALL_OVERRIDES, make_batch
from wm_tf.agent.builder import build_agent
from wm_tf.config import ConfigError, load_config
from wm_tf.runtime import distribution
from wm_tf.runtime.environments import EnvSpec
from wm_tf.runtime.trainer import Trainer

# A continuous-action agent whose imagination is deterministic: the actor's
# std is pinned at 1e-6 and the dynamics' mean is taken, so one device and
# two replicas (which draw different noise) must agree to float rounding.
PENDULUM = EnvSpec('Pendulum-v1', observations=3, action_dim=1,
                   discrete=False, low=(-2.0,), high=(2.0,))
DETERMINISTIC = list(SMALL_OVERRIDES) + [
    'replay.batch_size=8', 'actor.min_std=1e-6', 'actor.max_std=1e-6',
    'imagination.sample_dynamics=false']


# Medians over a batch: under a strategy the mean of the replicas' medians,
# which is not the median of the whole batch.
REPLICA_MEDIANS = ('world_model/continue_at_terminal',)


@pytest.fixture(scope='module')
def mirrored():
  strategy = distribution.make_strategy('mirrored')
  assert strategy.num_replicas_in_sync == 2
  return strategy


def _local(value, strategy):
  """Each replica's copy of a variable or value, as arrays."""
  if isinstance(value, keras.Variable):
    value = value.value
  return [np.asarray(v) for v in strategy.experimental_local_results(value)]


def test_make_strategy_names(mirrored):
  default = distribution.make_strategy('default')
  assert default is tf.distribute.get_strategy()
  assert not distribution.replicates(default)
  assert not distribution.replicates(None)
  assert distribution.replicates(mirrored)
  assert isinstance(mirrored, tf.distribute.MirroredStrategy)
  with pytest.raises(ValueError) as error:
    distribution.make_strategy('horovod')
  for name in ('default', 'mirrored', 'multi_worker', 'tpu'):
    assert name in str(error.value)


def test_distribute_batch_gives_each_replica_its_rows(mirrored, cartpole_spec):
  batch = make_batch(cartpole_spec, np.random.default_rng(0), batch_size=6)
  shards = distribution.distribute_batch(mirrored, batch)
  for key, value in batch.items():
    parts = _local(shards[key], mirrored)
    assert [p.shape[0] for p in parts] == [3, 3]
    np.testing.assert_array_equal(np.concatenate(parts), value.numpy())
  assert distribution.local_batch_size(mirrored, 6) == 6
  with pytest.raises(ValueError, match='multiple of the 2 replicas'):
    distribution.local_batch_size(mirrored, 7)
  with pytest.raises(ValueError, match='split evenly'):
    distribution.distribute_batch(
        mirrored, make_batch(cartpole_spec, np.random.default_rng(0),
                             batch_size=5))


def _models(agent):
  models = [agent.world_model, agent.actor, agent.critic, agent.slow_critic]
  if agent.learner.target.is_separate:
    models.append(agent.learner.target.model)
  return models


@pytest.mark.parametrize('overrides', [
    [],  # separate optimizers, no target, return normalisation
    # one Adam with per-part gradients; EMA target world model; the real-
    # sequence critic term (warmup 'gradual', weight set below)
    ['optimizers.type=masked', 'world_model.target=ema',
     'warmup.type=gradual'],
    # (`single`, one Adam on the summed losses, takes the same joint update
    # as `masked`: what differs, the gradients' masks, is per device.)
], ids=['separate', 'masked_ema_real'])
def test_mirrored_updates_match_one_device(overrides, mirrored):
  """Two replicas on halves of a batch = one device on the whole batch.

  Same initial weights, same three global batches (episode starts and
  terminals at random, so the replicas' mask counts differ): the losses,
  gradient norms, return scale and every updated weight (both replicas'
  copies) agree within float tolerance.
  """
  config = load_config(None, DETERMINISTIC + overrides)
  keras.utils.set_random_seed(0)
  one = build_agent(config, PENDULUM)
  two = build_agent(config, PENDULUM, strategy=mirrored)
  assert two.learner.strategy is mirrored
  for source, target in zip(_models(one), _models(two)):
    assert len(source.variables) == len(target.variables)
    for s, t in zip(source.variables, target.variables):
      t.assign(s)
  for agent in (one, two):
    agent.learner.actor_critic.warmup_real_ratio.assign(0.5)
  initial = [v.numpy() for m in _models(one) for v in m.variables]

  rng = np.random.default_rng(0)
  for step in range(3):
    batch = make_batch(PENDULUM, rng, batch_size=8, length=8,
                       first_prob=0.2, terminal_prob=0.2)
    seed = tf.constant([3, step], tf.int32)
    expected = one.learner.train(batch, seed)
    got = two.learner.train(distribution.distribute_batch(mirrored, batch),
                            seed)
    assert set(got) == set(expected)
    for name in expected:
      if name in REPLICA_MEDIANS:
        continue
      np.testing.assert_allclose(got[name], expected[name], rtol=1e-5,
                                 atol=1e-6, err_msg=f'step {step}: {name}')
    assert float(got['learner/nonfinite']) == 0.0

  final = [v for m in _models(one) for v in m.variables]
  mirrored_final = [v for m in _models(two) for v in m.variables]
  moved = 0
  for start, ref, var in zip(initial, final, mirrored_final):
    copies = _local(var, mirrored)
    assert len(copies) == 2
    for copy in copies:
      np.testing.assert_allclose(copy, ref.numpy(), rtol=1e-5, atol=1e-6,
                                 err_msg=var.path)
    moved += not np.array_equal(start, ref.numpy())
  assert moved > len(initial) // 2  # the updates did change the weights
  for variable in (lambda learner: learner.actor_critic.return_scale,
                   lambda learner: learner.train_steps):
    ref = variable(one.learner).numpy()
    for copy in _local(variable(two.learner), mirrored):
      np.testing.assert_allclose(copy, ref, rtol=1e-6)
  assert int(two.learner.train_steps.numpy()) == 3
  for ref, opt in zip(one.learner.layout.optimizers.values(),
                      two.learner.layout.optimizers.values()):
    assert int(opt.iterations.numpy()) == int(ref.iterations.numpy())


def test_trainer_under_mirrored_strategy_and_portable_checkpoint(mirrored,
                                                                 tmp_path):
  """A short run trains on two replicas; a one-device run resumes it."""
  overrides = list(SMALL_OVERRIDES) + [
      'run.total_env_steps=40', 'run.prefill_steps=16', 'warmup.steps=28',
      'run.train_ratio=0.25', 'run.eval_every=0', 'run.log_every=20',
      'run.histogram_every=0', 'run.image_every=0', 'replay.capacity=1000']
  config = load_config(None, overrides)
  trainer = Trainer(config, str(tmp_path), progress=False, strategy=mirrored)
  assert trainer.strategy is mirrored
  summary = trainer.run()
  assert trainer.train_steps >= 5
  assert summary['train/nonfinite_updates'] == 0.0
  assert np.isfinite(summary['world_model/loss'])
  assert np.isfinite(summary['actor/loss'])
  actor = [_local(v, mirrored)[0] for v in trainer.agent.actor.variables]

  resumed = Trainer(config, str(tmp_path), progress=False)
  assert resumed.strategy is None and resumed.resumed_from is not None
  assert resumed.train_steps == trainer.train_steps
  for ref, var in zip(actor, resumed.agent.actor.variables):
    np.testing.assert_array_equal(var.numpy(), ref)

  with pytest.raises(ConfigError, match='multiple of the 2 replicas'):
    Trainer(load_config(None, overrides + ['replay.batch_size=3']),
            str(tmp_path / 'odd'), progress=False, strategy=mirrored)


class _Cluster:
  """A strategy as `worker_index` sees it: only its cluster resolver."""

  def __init__(self, cluster, task_type, task_id):
    self.cluster_resolver = (
        tf.distribute.cluster_resolver.SimpleClusterResolver(
            tf.train.ClusterSpec(cluster), task_type=task_type,
            task_id=task_id))


WORKERS = {'worker': ['127.0.0.1:1', '127.0.0.1:2', '127.0.0.1:3']}
WITH_CHIEF = {'chief': ['127.0.0.1:0'], 'worker': ['127.0.0.1:1']}


def test_worker_index_follows_tf_config_order(mirrored):
  assert distribution.worker_index(None) == 0
  assert distribution.worker_index(tf.distribute.get_strategy()) == 0
  assert distribution.worker_index(mirrored) == 0
  assert [distribution.worker_index(_Cluster(WORKERS, 'worker', i))
          for i in range(3)] == [0, 1, 2]
  assert distribution.worker_index(_Cluster(WITH_CHIEF, 'chief', 0)) == 0
  assert distribution.worker_index(_Cluster(WITH_CHIEF, 'worker', 0)) == 1


def test_worker_seed_keeps_worker_0_and_separates_the_others():
  workers = [_Cluster(WORKERS, 'worker', i) for i in range(3)]
  assert distribution.worker_seed(7, None) == 7
  assert distribution.worker_seed(7, workers[0]) == 7
  ints = [distribution.worker_seed(7, w) for w in workers]
  assert len(set(ints)) == 3 and all(0 <= s < 2**31 for s in ints)
  assert ints[1] == int(np.random.SeedSequence([7, 1]).generate_state(1)[0]
                        // 2)
  # Another config seed moves every worker's seed.
  assert distribution.worker_seed(8, workers[1]) != ints[1]

  seed = tf.constant([3, 4], tf.int32)
  assert distribution.worker_seed(seed, workers[0]) is seed
  tensors = [distribution.worker_seed(seed, w).numpy() for w in workers]
  assert tensors[1].dtype == np.int32 and tensors[1].shape == (2,)
  assert not np.array_equal(tensors[1], tensors[0])
  assert not np.array_equal(tensors[1], tensors[2])
  # The draws of an acting step differ between workers.
  draws = [tf.random.stateless_uniform([4], s).numpy() for s in tensors]
  assert not np.allclose(draws[0], draws[1])


def test_limit_threads_sizes_the_pools_before_tensorflow_starts():
  # A fresh process: this one's TensorFlow has long started.
  code = ('import tensorflow as tf\n'
          'from wm_tf.runtime.distribution import limit_threads\n'
          'limit_threads(1)\n'
          'print(tf.config.threading.get_intra_op_parallelism_threads(),\n'
          '      tf.config.threading.get_inter_op_parallelism_threads())\n')
  result = subprocess.run([sys.executable, '-c', code], capture_output=True,
                          text=True, timeout=120, cwd=REPO_ROOT)
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.split() == ['1', '1']


def test_limit_threads_refuses_negative_and_late_changes():
  with pytest.raises(ValueError, match='threads=-1.*positive'):
    distribution.limit_threads(-1)
  distribution.limit_threads(0)  # TensorFlow's default: nothing to change
  tf.constant(1.0).numpy()
  busy = tf.config.threading.get_intra_op_parallelism_threads()
  with pytest.raises(ValueError, match='already run an op'):
    distribution.limit_threads(busy + 3)
  assert tf.config.threading.get_intra_op_parallelism_threads() == busy
