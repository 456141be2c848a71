"""Tests for wm_tf/runtime/env_families.py and its families (atari, dmc,
pixels, your own env): spaces, seeding, vector envs, protocol details
against the raw emulator and simulator, and the error messages."""

import ctypes.util
import importlib.util
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from PIL import Image

from wm_tf.config import ConfigError, load_config
from wm_tf.config.coercion import build
from wm_tf.config.schema import EnvConfig
from wm_tf.runtime import dmc
from wm_tf.runtime.env_families import make_family_env
from wm_tf.runtime.env_process import ProcessEnv
from wm_tf.runtime.environments import UnsupportedEnvironment, make_env
from wm_tf.runtime.pixels import PixelObservation

ale_py = pytest.importorskip('ale_py')
if importlib.util.find_spec('dm_control') is None:
  pytest.skip('dm_control is not installed', allow_module_level=True)
suite = dmc.import_suite()  # without rendering in this (TensorFlow) process

IMAGE = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
# MuJoCo's OpenGL library (.ci/run installs OSMesa where it can).
_GL_LIBRARY = {'osmesa': 'OSMesa', 'egl': 'EGL'}.get(dmc.render_backend())
NEEDS_RENDER = pytest.mark.skipif(
    _GL_LIBRARY is not None and ctypes.util.find_library(_GL_LIBRARY) is None,
    reason=f'lib{_GL_LIBRARY} is not installed: apt-get install libosmesa6')
POINT = 'examples.point_reach:PointReach'


def env_config(env_id, **options) -> EnvConfig:
  """The env section {id: env_id, **options}, nested mappings included."""
  return build(EnvConfig, {'id': env_id, **options}, 'env')


def make(env_id, max_episode_steps=None, **options):
  return make_family_env(env_id, env_config(env_id, **options),
                         max_episode_steps)


def vector(space_shape, dtype=np.float32):
  return gym.spaces.Box(-np.inf, np.inf, space_shape, dtype)


# -- spaces ------------------------------------------------------------------

@pytest.mark.parametrize('env_id, options, observation, action', [
    ('CartPole-v1', {}, None, gym.spaces.Discrete(2)),
    ('CartPole-v1', {'pixels': True}, {'image': IMAGE},
     gym.spaces.Discrete(2)),
    ('Pendulum-v1', {'pixels': True, 'size': (32, 48)},
     {'image': gym.spaces.Box(0, 255, (32, 48, 3), np.uint8)},
     gym.spaces.Box(-2.0, 2.0, (1,), np.float32)),
    (POINT, {}, {'position': gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
                 'target': gym.spaces.Box(-1.0, 1.0, (2,), np.float32)},
     gym.spaces.Box(-1.0, 1.0, (2,), np.float32)),
    ('atari:Pong', {}, {'image': IMAGE}, gym.spaces.Discrete(6)),
    ('atari:Breakout', {'atari': {'gray': True, 'full_action_space': True}},
     {'image': gym.spaces.Box(0, 255, (64, 64, 1), np.uint8)},
     gym.spaces.Discrete(18)),
    ('dmc:cartpole_balance', {},
     {'position': vector((3,)), 'velocity': vector((2,))},
     gym.spaces.Box(-1.0, 1.0, (1,), np.float32)),
    ('dmc:walker_walk', {},
     {'orientations': vector((14,)), 'height': vector((1,)),
      'velocity': vector((9,))},
     gym.spaces.Box(-1.0, 1.0, (6,), np.float32)),
    pytest.param('dmc:cartpole_balance', {'pixels': True}, {'image': IMAGE},
                 gym.spaces.Box(-1.0, 1.0, (1,), np.float32),
                 marks=NEEDS_RENDER),
    pytest.param('dmc:cartpole_balance',
                 {'pixels': True, 'dmc': {'proprio_with_pixels': True}},
                 {'image': IMAGE, 'position': vector((3,)),
                  'velocity': vector((2,))},
                 gym.spaces.Box(-1.0, 1.0, (1,), np.float32),
                 marks=NEEDS_RENDER),
])
def test_each_family_has_the_specified_spaces(env_id, options, observation,
                                              action):
  env = make_env(env_id, options=env_config(env_id, **options))
  try:
    if observation is None:
      assert env.observation_space == gym.make(env_id).observation_space
    else:
      assert env.observation_space == gym.spaces.Dict(observation)
    assert env.action_space == action
    first, _ = env.reset(seed=0)
    later, *_ = env.step(env.action_space.sample())
    assert env.observation_space.contains(first)
    assert env.observation_space.contains(later)
    if 'image' in (observation or {}):
      image = later['image']
      assert image.dtype == np.uint8 and image.std() > 5  # a real render
  finally:
    env.close()


def test_kwargs_reach_an_entry_point_class_and_function():
  for attribute in ('PointReach', 'make_point_reach'):
    env = make(f'examples.point_reach:{attribute}',
               kwargs={'max_steps': 3, 'radius': 0.0})
    env.reset(seed=0)
    ends = [env.step(np.zeros(2))[3] for _ in range(3)]
    assert ends == [False, False, True]


def test_gymnasium_module_prefixed_id_is_made_as_gymnasium_does():
  env = make('gymnasium.envs.classic_control:CartPole-v1')
  assert env.spec.id == 'CartPole-v1'


# -- seeding, check_env, vector envs -----------------------------------------

REPRODUCIBLE = [
    ('CartPole-v1', {'pixels': True}),
    (POINT, {}),
    (POINT, {'pixels': True, 'action_repeat': 2}),
    ('atari:Pong', {'atari': {'sticky_actions': 0.25}}),
    ('dmc:cartpole_balance', {}),
    pytest.param('dmc:cartpole_balance', {'pixels': True}, marks=NEEDS_RENDER),
]


def _rollout(env, seed, steps=6):
  """Observations (flattened) [steps + 1, D] and rewards [steps]."""
  observations = [env.reset(seed=seed)[0]]
  env.action_space.seed(0)
  rewards = []
  for _ in range(steps):
    observation, reward, *_ = env.step(env.action_space.sample())
    observations.append(observation)
    rewards.append(reward)
  flat = [np.concatenate([np.ravel(o[k]) for k in sorted(o)])
          if isinstance(o, dict) else np.ravel(o) for o in observations]
  return np.stack(flat), np.array(rewards)


@pytest.mark.parametrize('env_id, options', REPRODUCIBLE)
def test_reset_seed_is_reproducible(env_id, options):
  env = make(env_id, **options)
  first, rewards = _rollout(env, seed=3)
  other, _ = _rollout(env, seed=4)
  again, rewards_again = _rollout(env, seed=3)
  env.close()
  np.testing.assert_array_equal(first, again)
  np.testing.assert_array_equal(rewards, rewards_again)
  assert not np.array_equal(first, other)
  fresh = make(env_id, **options)  # a new env, not only a re-seeded one
  np.testing.assert_array_equal(_rollout(fresh, seed=3)[0], first)
  fresh.close()


@pytest.mark.parametrize('env_id, options', REPRODUCIBLE)
def test_gymnasium_env_checker_passes(env_id, options):
  env = make(env_id, **options)
  with warnings.catch_warnings():
    # It warns that a wrapped env is not its unwrapped self.
    warnings.simplefilter('ignore')
    check_env(env, skip_render_check=True)
  env.close()


@pytest.mark.parametrize('env_id, options', [
    ('CartPole-v1', {'pixels': True}), ('atari:Pong', {}),
    ('dmc:cartpole_balance', {}),
    pytest.param('dmc:cartpole_balance', {'pixels': True}, marks=NEEDS_RENDER),
    (POINT, {})])
def test_vector_env_autoresets_on_the_next_step(env_id, options):
  config = env_config(env_id, **options)
  envs = gym.vector.SyncVectorEnv(
      [lambda: make_env(env_id, 3, options=config)] * 2,
      autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)
  observations, _ = envs.reset(seed=[5, 6])
  assert envs.single_observation_space.contains(
      {k: v[0] for k, v in observations.items()}
      if isinstance(observations, dict) else observations[0])
  actions = envs.action_space.sample()
  ends = []
  for _ in range(4):
    _, rewards, terminated, truncated, _ = envs.step(actions)
    ends.append(terminated | truncated)
  # Three steps and the end, then the step that resets: no reward.
  np.testing.assert_array_equal(np.stack(ends)[:, 0], [0, 0, 1, 0])
  assert rewards[0] == 0.0
  envs.close()


def test_async_vector_env_runs_the_families_in_subprocesses():
  options = EnvConfig(id='dmc:cartpole_balance')
  envs = gym.vector.AsyncVectorEnv(
      [lambda: make_env('dmc:cartpole_balance', options=options)] * 2,
      autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)
  try:
    observations, _ = envs.reset(seed=[1, 1])
    np.testing.assert_array_equal(observations['position'][0],
                                  observations['position'][1])
    observations, *_ = envs.step(np.zeros((2, 1), np.float32))
    assert observations['velocity'].shape == (2, 2)
  finally:
    envs.close()


# -- atari: the frame skip and pooling against the emulator ------------------

def test_atari_frame_skip_max_pools_the_last_two_frames_like_raw_ale():
  env = make('atari:Pong', atari={'noop_max': 0})
  ale = ale_py.ALEInterface()
  ale.setFloat('repeat_action_probability', 0.0)
  ale.loadROM(ale_py.roms.get_rom_path('pong'))
  ale.reset_game()
  minimal = ale.getMinimalActionSet()
  observation, _ = env.reset(seed=0)
  rng = np.random.default_rng(0)
  pooling_mattered = False
  for step in range(80):
    action = int(rng.integers(len(minimal)))
    screens, reward = [], 0.0
    for _ in range(4):
      reward += ale.act(minimal[action])
      screens.append(ale.getScreenRGB())
    pooled = np.maximum(screens[-2], screens[-1])
    expected = np.asarray(Image.fromarray(pooled).resize(
        (64, 64), Image.BILINEAR))
    observation, got_reward, *_ = env.step(action)
    np.testing.assert_array_equal(observation['image'], expected,
                                  err_msg=f'step {step}')
    assert got_reward == reward
    pooling_mattered |= not np.array_equal(pooled, screens[-1])
  assert pooling_mattered  # the ball and paddles moved between frames


def test_atari_noop_starts_are_uniform_up_to_noop_max():
  env = make('atari:Pong', atari={'noop_max': 30})
  counts = []
  for seed in range(4):
    _, info = env.reset(seed=seed)
    # The emulator's own count of the frames since the game's reset.
    assert env.unwrapped.ale.getEpisodeFrameNumber() == info['noops']
    counts.append(info['noops'])
  assert len(set(counts)) > 1 and all(0 <= n <= 30 for n in counts)
  env.close()


def test_atari_episode_is_truncated_at_max_frames():
  env = make('atari:Pong', atari={'max_frames': 40})
  env.reset(seed=0)
  steps = [env.step(0) for _ in range(10)]  # 4 frames each
  assert [s[2:4] for s in steps] == [(False, False)] * 9 + [(False, True)]
  assert steps[-1][4]['frames'] == 40
  env.close()


@pytest.mark.parametrize('life_loss', ['end', 'ignore'])
def test_atari_life_loss(life_loss):
  env = make('atari:Breakout', atari={'life_loss': life_loss})
  _, info = env.reset(seed=0)
  assert info['lives'] == 5
  env.action_space.seed(0)
  for _ in range(2_000):
    _, _, terminated, _, info = env.step(env.action_space.sample())
    if terminated or info['lives'] < 5:
      break
  # 'end': the first lost life ends the episode; 'ignore': play goes on.
  assert terminated == (life_loss == 'end')
  assert info['lives'] == 4
  env.close()


# -- dmc: action repeat against the raw simulator ----------------------------

def test_dmc_action_repeat_sums_rewards_of_raw_dm_control_steps():
  env = make('dmc:walker_walk')
  raw = suite.load('walker', 'walk', task_kwargs={'random': 7})
  observation, _ = env.reset(seed=7)
  time_step = raw.reset()
  np.testing.assert_array_equal(observation['height'],
                                np.float32([time_step.observation['height']]))
  rng = np.random.default_rng(1)
  for _ in range(20):
    action = rng.uniform(-1, 1, 6).astype(np.float32)
    observation, reward, *_ = env.step(action)
    expected = 0.0
    for _ in range(2):
      time_step = raw.step(action)
      expected += time_step.reward
    assert reward == pytest.approx(expected, rel=1e-12)
    for key, value in time_step.observation.items():
      np.testing.assert_array_equal(observation[key],
                                    np.float32(value).reshape(-1))
  env.close()


def test_dmc_episode_is_truncated_at_the_time_limit():
  env = make('dmc:cartpole_balance')  # 1,000 control steps, repeat 2
  env.reset(seed=0)
  for step in range(1, 501):
    _, _, terminated, truncated, _ = env.step(np.zeros(1, np.float32))
    assert not terminated and truncated == (step == 500)
  env.close()


@NEEDS_RENDER
def test_dmc_pixels_come_from_the_configured_camera():
  images = []
  for camera in (0, 1):
    env = make('dmc:cartpole_balance', pixels=True, dmc={'camera': camera})
    images.append(env.reset(seed=0)[0]['image'])
    env.close()
  assert not np.array_equal(*images)


# -- errors -------------------------------------------------------------------

@pytest.mark.parametrize('env_id, needles', [
    ('atarii:Pong', ["'atarii'", "'atari'", 'dmc:<domain>_<task>']),
    ('atari:Pongg', ["'Pongg'", "'Pong'", 'atari:<Game>']),
    ('dmc:walker_wlk', ["'walker_wlk'", "'walker_walk'", 'dm_control']),
    ('dmc:cartpol_balance', ["'cartpole_balance'"]),
    ('examples.point_reach:PointRech', ["'PointRech'", "'PointReach'"]),
    ('builtins:dict', ['returned dict, not a gymnasium.Env']),
    ('CartPol-v1', ["'CartPole-v1'", 'module:attribute']),
])
def test_unknown_names_give_one_line_with_close_matches(env_id, needles):
  with pytest.raises(UnsupportedEnvironment) as info:
    make(env_id)
  message = str(info.value)
  assert '\n' not in message and 'env.id' in message
  for needle in needles:
    assert needle in message, message


@pytest.mark.parametrize('env_id, module, extra', [
    ('atari:Pong', 'ale_py', 'atari'),
    ('dmc:walker_walk', 'dm_control', 'dmc')])
def test_missing_optional_package_names_the_pip_extra(env_id, module, extra,
                                                      monkeypatch):
  for name in list(sys.modules):  # imports of the package fail
    if name == module or name.startswith(module + '.'):
      monkeypatch.setitem(sys.modules, name, None)
  monkeypatch.setitem(sys.modules, module, None)
  with pytest.raises(UnsupportedEnvironment,
                     match=rf"pip install -e '\.\[{extra}\]'"):
    make(env_id)


def test_pixels_need_an_env_that_renders_rgb_array():
  with pytest.raises(UnsupportedEnvironment, match='rgb_array'):
    PixelObservation(gym.make('CartPole-v1'), (64, 64))


@pytest.mark.parametrize('override, key', [
    ('env.size=[64]', 'env.size'),
    ('env.size=[0, 64]', 'env.size'),
    ('env.action_repeat=0', 'env.action_repeat'),
    ('env.atari.sticky_actions=1.5', 'env.atari.sticky_actions'),
    ('env.atari.life_loss=reset', 'env.atari.life_loss'),
    ('env.kwargs=3', 'env.kwargs'),
    ('env.dmc.camera=-1', 'env.dmc.camera'),
])
def test_bad_env_options_are_config_errors(override, key):
  with pytest.raises(ConfigError, match=key.replace('.', r'\.')):
    load_config(None, [override])


def test_env_kwargs_are_a_mapping_from_yaml():
  config = load_config(None, ['env.kwargs={speed: 0.05}',
                              'env.kwargs.radius=0.2'])
  assert config.env.kwargs == {'speed': 0.05, 'radius': 0.2}


def test_process_env_forwards_calls_and_errors_of_the_child():
  env = ProcessEnv(gym.make, 'CartPole-v1')
  local = gym.make('CartPole-v1')
  np.testing.assert_array_equal(env.reset(seed=2)[0], local.reset(seed=2)[0])
  np.testing.assert_array_equal(env.step(1)[0], local.step(1)[0])
  assert env.observation_space == local.observation_space
  child = env._child  # pylint: disable=protected-access
  env.close()
  assert child.poll() == 0  # the child exited when the env closed
  with pytest.raises(gym.error.Error, match='NoSuchEnv'):
    ProcessEnv(gym.make, 'NoSuchEnv-v0')
