"""Tests for wm_tf/runtime/evaluation.py and launch/evaluate.py.

Run directories are made as the trainer leaves them (a checkpoint of an
agent whose actor weights were perturbed, so episodes differ in length);
returns are checked against an independent loop over the agent's own
`Policy.act_deterministic`, carrying its state along each episode.
"""

import os
import re
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

from conftest import REPO_ROOT, SMALL_OVERRIDES
from wm_tf.config import load_config
from wm_tf.runtime import evaluation
from wm_tf.runtime.environments import to_env_actions
from wm_tf.runtime.export import export_run
from wm_tf.runtime.trainer import Trainer
from wm_tf.specs import ObservationSpec

SEED = 5


def _make_run(logdir, env_id):
  config = load_config(None, list(SMALL_OVERRIDES) + [f'env.id={env_id}'])
  trainer = Trainer(config, str(logdir), progress=False)
  rng = np.random.default_rng(0)
  for v in trainer.agent.actor.variables:
    v.assign(v.numpy() + rng.normal(scale=0.5, size=v.shape))
  trainer.save_checkpoint()
  return trainer


def _reference_returns(trainer, episodes, seed):
  """The agent's own deterministic policy, episode i reset with seed + i."""
  env = gym.make(trainer.config.env.id)
  policy = trainer.agent.policy
  returns = []
  for i in range(episodes):
    obs, _ = env.reset(seed=seed + i)
    state, is_first = policy.initial_state(1), True
    total, done = 0.0, False
    while not done:
      action, state, _ = policy.act_deterministic(
          {'observation': np.asarray(obs, np.float32)[None]},
              np.array([is_first]), state)
      action, is_first = action.numpy(), False
      obs, reward, terminated, truncated, _ = env.step(
          to_env_actions(action, trainer.spec)[0])
      total += float(reward)
      done = terminated or truncated
    returns.append(total)
  env.close()
  return np.array(returns)


@pytest.fixture(scope='module')
def cartpole(tmp_path_factory):
  root = tmp_path_factory.mktemp('evaluate')
  trainer = _make_run(root / 'run', 'CartPole-v1')
  saved_model = export_run(str(root / 'run'), str(root / 'models'))
  return {'root': root, 'logdir': str(root / 'run'), 'trainer': trainer,
          'saved_model': saved_model,
          'reference': _reference_returns(trainer, 4, SEED)}


def _launch(*args, timeout=300):
  return subprocess.run([sys.executable, '-m', 'launch.evaluate', *args],
                        cwd=REPO_ROOT, capture_output=True, text=True,
                        timeout=timeout)


def test_reference_episodes_differ(cartpole):
  # Otherwise matching them would prove little.
  assert len(set(cartpole['reference'])) > 1


def test_run_directory_policy_gives_the_agents_returns(cartpole):
  policy = evaluation.policy_from_run(cartpole['logdir'])
  assert policy.env_id == 'CartPole-v1'
  assert policy.source.endswith('ckpt-0')
  returns = evaluation.run_episodes(policy, 'CartPole-v1', 4, SEED)
  np.testing.assert_array_equal(returns, cartpole['reference'])


def test_saved_model_policy_gives_the_same_returns(cartpole):
  policy = evaluation.policy_from_saved_model(cartpole['saved_model'])
  assert policy.env_id == 'CartPole-v1'  # recorded by the export
  assert policy.env_options == cartpole['trainer'].config.env
  assert policy.observations == (ObservationSpec('observation', (4,)),)
  returns = evaluation.run_episodes(policy, 'CartPole-v1', 4, SEED)
  np.testing.assert_array_equal(returns, cartpole['reference'])


def test_continuous_actions(tmp_path):
  trainer = _make_run(tmp_path / 'run', 'Pendulum-v1')
  policy = evaluation.policy_from_run(str(tmp_path / 'run'))
  returns = evaluation.run_episodes(policy, 'Pendulum-v1', 1, SEED)
  np.testing.assert_allclose(returns, _reference_returns(trainer, 1, SEED),
                             rtol=1e-6)


def test_launcher_prints_mean_and_std_and_writes_a_gif(cartpole):
  video = os.path.join(cartpole['root'], 'video', 'eval.gif')
  result = _launch(f'--logdir={cartpole["logdir"]}', '--episodes=4',
                   f'--seed={SEED}', '--video', '--video_episodes=2',
                   f'--video_path={video}')
  assert result.returncode == 0, result.stderr[-3000:]
  reference = cartpole['reference']
  printed = [float(x) for x in re.findall(r'episode \d+: return ([-\d.]+)',
                                          result.stdout)]
  np.testing.assert_allclose(printed, reference, atol=0.005)
  summary = re.search(r'4 episodes: return mean ([-\d.]+), std ([-\d.]+)',
                      result.stdout)
  assert float(summary.group(1)) == pytest.approx(reference.mean(), abs=0.005)
  assert float(summary.group(2)) == pytest.approx(reference.std(), abs=0.005)
  # The first 2 episodes: one frame per step plus each reset.
  frames = int(re.search(r'video: .*eval\.gif \((\d+) frames\)',
                         result.stdout).group(1))
  assert frames == int(reference[:2].sum()) + 2
  import imageio.v2 as imageio
  images = imageio.mimread(video)
  assert len(images) > 2  # identical neighbours may be merged
  assert images[0].shape[:2] == (200, 300)  # 600 x 400 halved


def test_launcher_evaluates_a_saved_model(cartpole):
  # No --env: the SavedModel names its environment.
  result = _launch(f'--saved_model={cartpole["saved_model"]}',
                   '--episodes=4', f'--seed={SEED}')
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'environment: CartPole-v1' in result.stdout
  printed = [float(x) for x in re.findall(r'episode \d+: return ([-\d.]+)',
                                          result.stdout)]
  np.testing.assert_allclose(printed, cartpole['reference'], atol=0.005)


def test_a_saved_model_without_its_env_needs_env(cartpole, tmp_path):
  # As exported before SavedModels recorded their env section.
  from wm_tf.runtime.export import ServingPolicy, save_serving_policy
  trainer = cartpole['trainer']
  path = save_serving_policy(ServingPolicy(trainer.agent.policy, trainer.spec),
                             str(tmp_path / 'old'))
  assert evaluation.policy_from_saved_model(path).env_id is None
  result = _launch(f'--saved_model={path}', '--episodes=1')
  assert result.returncode == 2
  assert 'does not record its environment' in result.stderr
  assert '--env=ID' in result.stderr.strip().splitlines()[-1]
  result = _launch(f'--saved_model={path}', '--env=CartPole-v1',
                   '--episodes=4', f'--seed={SEED}')
  assert result.returncode == 0, result.stderr[-3000:]
  printed = [float(x) for x in re.findall(r'episode \d+: return ([-\d.]+)',
                                          result.stdout)]
  np.testing.assert_allclose(printed, cartpole['reference'], atol=0.005)


def test_missing_pygame_is_a_clear_error(cartpole, monkeypatch, tmp_path):
  monkeypatch.setitem(sys.modules, 'pygame', None)  # import pygame fails
  policy = evaluation.policy_from_run(cartpole['logdir'])
  writer = evaluation.VideoWriter(str(tmp_path / 'eval.gif'))
  with pytest.raises(evaluation.EvaluationError,
                     match=r"needs pygame.*pip install -e '\.\[video\]'"):
    evaluation.run_episodes(policy, 'CartPole-v1', 1, SEED,
                            on_frame=writer.add, record_episodes=1)
  writer.close()
  assert not os.path.exists(tmp_path / 'eval.gif')  # no empty video left


@pytest.mark.parametrize('args, needle', [
    ((), 'exactly one of --logdir'),
    (('--logdir=a', '--saved_model=b'), 'exactly one of --logdir'),
    (('--saved_model=missing',), "'missing' does not exist"),
])
def test_usage_errors(args, needle):
  result = _launch(*args)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1].startswith('error:')
  assert needle in result.stderr


def test_unusable_inputs_are_one_error(cartpole, tmp_path):
  empty = tmp_path / 'empty'
  empty.mkdir()
  with pytest.raises(evaluation.EvaluationError, match='no config.yaml'):
    evaluation.policy_from_run(str(empty))
  (empty / 'config.yaml').write_text(
      open(os.path.join(cartpole['logdir'], 'config.yaml')).read())
  with pytest.raises(evaluation.EvaluationError, match='no checkpoint'):
    evaluation.policy_from_run(str(empty))
  with pytest.raises(evaluation.EvaluationError, match='does not exist'):
    evaluation.policy_from_saved_model(str(tmp_path / 'missing'))
  policy = evaluation.policy_from_run(cartpole['logdir'])
  with pytest.raises(evaluation.EvaluationError,
                     match=(r'takes observations observation float32 \[4\], '
                            r'but Pendulum-v1 gives observation float32 '
                            r'\[3\]')):
    evaluation.run_episodes(policy, 'Pendulum-v1', 1, SEED)
  with pytest.raises(evaluation.EvaluationError, match='CartPol-v1'):
    evaluation.run_episodes(policy, 'CartPol-v1', 1, SEED)
  with pytest.raises(evaluation.EvaluationError, match=r'\.gif or \.mp4'):
    evaluation.VideoWriter(str(tmp_path / 'eval.avi'))
