"""Every environment family trains, exports and evaluates (short runs).

The commands of the observations issue, each as a short in-process run on
small networks and 16x16 images: `atari:Pong`, `dmc:walker_walk`
(proprioceptive Dict observations), `dmc:cartpole_balance` from pixels,
CartPole from pixels, and the example `module:Class` environment with a
Dict observation space (examples/point_reach.py).
"""

import numpy as np
import pytest
import tensorflow as tf

from conftest import SMALL_OVERRIDES
from wm_tf.config import load_config

RUN = list(SMALL_OVERRIDES) + [
    'encoder.cnn_depth=4', 'env.size=[16,16]', 'run.total_env_steps=120',
    'run.prefill_steps=100', 'warmup.steps=0', 'run.train_ratio=0.25',
    'run.eval_every=0', 'run.image_every=0', 'run.histogram_every=0',
    'run.log_every=10', 'run.jit=false', 'replay.capacity=1000',
    'env.max_episode_steps=30']

CASES = {
    'atari': (['env.id=atari:Pong'], {'image': (16, 16, 3)}),
    'dmc_proprio': (['env.id=dmc:walker_walk'],
                    {'height': (1,), 'orientations': (14,),
                     'velocity': (9,)}),
    'dmc_pixels': (['env.id=dmc:cartpole_balance', 'env.pixels=true'],
                   {'image': (16, 16, 3)}),
    'cartpole_pixels': (['env.id=CartPole-v1', 'env.pixels=true'],
                        {'image': (16, 16, 3)}),
    'own_dict_env': (['env.id=examples.point_reach:PointReach'],
                     {'position': (2,), 'target': (2,)}),
}


def _skip_without(case):
  if case == 'atari':
    pytest.importorskip('ale_py')
  if case.startswith('dmc'):
    pytest.importorskip('dm_control')


@pytest.mark.parametrize('case', sorted(CASES))
def test_family_trains_exports_and_evaluates(case, tmp_path):
  _skip_without(case)
  from wm_tf.runtime import evaluation
  from wm_tf.runtime.export import export_run
  from wm_tf.runtime.trainer import Trainer
  overrides, shapes = CASES[case]
  logdir = str(tmp_path / 'run')
  trainer = Trainer(load_config(None, RUN + overrides), logdir,
                    progress=False)
  assert {o.key: tuple(o.shape) for o in trainer.spec.observations} == shapes
  summary = trainer.run()
  assert trainer.train_steps > 0 and trainer.env_steps >= 120
  for key in ('world_model/loss', 'actor/loss', 'critic/loss'):
    assert np.isfinite(summary[key]), (key, summary[key])
  # Evaluate as `launch.evaluate --logdir` does: the run's own env settings.
  policy = evaluation.policy_from_run(logdir)
  returns = evaluation.run_episodes(policy, policy.env_id, 1, seed=0,
                                    max_episode_steps=10)
  assert returns.shape == (1,) and np.isfinite(returns).all()
  # Export: the SavedModel's action signature takes each key with the
  # env's dtype and shape.
  path = export_run(logdir, str(tmp_path / 'model'))
  model = tf.saved_model.load(path)
  inputs = model.signatures['action'].structured_input_signature[1]
  for key, shape in shapes.items():
    want = tf.uint8 if len(shape) == 3 else tf.float32
    assert inputs[key].dtype == want and tuple(inputs[key].shape[1:]) == shape
  # The SavedModel records the run's env section, so it evaluates on its
  # own environment (pixels, action repeat, family settings) without the
  # run directory.
  loaded = evaluation.policy_from_saved_model(path)
  assert loaded.env_options == trainer.config.env
  returns = evaluation.run_episodes(loaded, loaded.env_id, 1, seed=0,
                                    max_episode_steps=10)
  assert returns.shape == (1,) and np.isfinite(returns).all()
