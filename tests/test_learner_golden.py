"""Golden numbers of the agent's update, one case per alternative.

Every alternative of `benchmarks.alternatives.ALTERNATIVES` that its
environment's config accepts (docs/choosing_a_design.md) is recorded; the
test replays those of Pendulum and, of CartPole's, the ones Pendulum lacks
or whose code differs with discrete actions (`DISCRETE_PATHS`). With small
models and XLA off, makes three consecutive train steps through its
warmup schedule (env steps 0, 1000 and 3000 of a 2000-step warmup: the
world model alone, or a falling real mix, or phases) on fixed batches and
seeds. The metrics of each step and a checksum of every model's weights
after it are compared with `tests/data/learner_golden.json`, recorded
before the learner was split into a world-model and an actor-critic
learner: the numbers prove the split changed no update.

A metric renamed since the recording is looked up under its old name
through `RENAMED`; the recorded numbers are never regenerated for a
refactor. To record them anew (only for an intended change of behaviour):

    python tests/test_learner_golden.py --write

A new alternative gets its case recorded with `--add`, which runs only the
cases the file does not hold yet and keeps every recorded one as it is:

    python tests/test_learner_golden.py --add
"""

import functools
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run as a script (--write) from anywhere

from conftest import SMALL_TWO_LAYERS, make_batch  # noqa: E402
from wm_tf.agent.builder import build_agent  # noqa: E402
from wm_tf.config import load_config  # noqa: E402
from wm_tf.runtime.environments import EnvSpec  # noqa: E402

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data',
                       'learner_golden.json')
ENV_STEPS = (0, 1000, 3000)
# float32 sums are reduced in a different order on CPUs of other vector
# widths (AVX-512 against AVX2), which moves a number of 1e5 after three
# updates by about 1e-5 of itself; a change to the code moves them by far
# more.
RTOL, ATOL = 1e-4, 1e-6
# Each env's algorithm as it was recorded: its config before the one
# recipe became the defaults (the presets that reproduce it).
OLD_PRESETS = {
    'cartpole': 'presets=[size_S, discrete_dyna]',
    'pendulum': 'presets=[size_S, continuous_rssm]',
}
EXTRA = list(SMALL_TWO_LAYERS) + ['representation_learner.deter_dim=16']
SPECS = {
    'cartpole': EnvSpec('CartPole-v1', observations=4, action_dim=2,
                        discrete=True),
    'pendulum': EnvSpec('Pendulum-v1', observations=3, action_dim=1,
                        discrete=False, low=(-2.0,), high=(2.0,)),
}
# CartPole cases replayed beside Pendulum's same alternative: acting and
# planning choose among discrete actions in code of their own. The others
# (representations, targets, warmups, returns, optimizers) act on latents,
# losses and gradients alike for both action kinds, and each replays on
# Pendulum.
DISCRETE_PATHS = ('baseline', 'mpc', 'mpc_random_shooting', 'uncertainty',
                  'uncertainty_mpc')
# New metric name -> the name it was recorded under.
RENAMED = {
    'critic/real_ratio': 'learner/critic_real_weight',
    'warmup/real_ratio': 'warmup/critic_real_return_mix',
}


# Run in a subprocess: importing the benchmark defines its absl flags,
# which other benchmarks imported by the suite define too.
_CASES = """
import json, sys
from benchmarks import alternatives
found = []
for env, extra in json.loads(sys.argv[1]).items():
  earlier = {}
  for alternative in alternatives.ALTERNATIVES:
    resolved = alternatives.resolve(alternative, env, extra, earlier)
    earlier[alternative.name] = resolved
    if resolved.status == 'ok' or alternative.name == 'baseline':
      found.append((env, alternative.name, resolved.overrides))
print(json.dumps(found))
"""


def _extra(env):
  return EXTRA + [OLD_PRESETS[env]]  # the later `presets` wins


@functools.lru_cache(maxsize=None)
def _resolved_cases():
  out = subprocess.run(
      [sys.executable, '-c', _CASES,
       json.dumps({env: _extra(env) for env in SPECS})], cwd=ROOT, check=True, capture_output=True,
      text=True).stdout
  return tuple((env, name, tuple(overrides))
               for env, name, overrides in json.loads(out))


def cases():
  """(env, alternative name, overrides) of every alternative that runs:
  those of docs/choosing_a_design.md the env's config accepts, each
  config once (`benchmarks.alternatives.resolve`)."""
  return list(_resolved_cases())


def replayed_cases():
  """The `cases` the test replays: Pendulum's, and CartPole's that
  Pendulum lacks or that are in `DISCRETE_PATHS`."""
  found = cases()
  pendulum = {name for env, name, _ in found if env == 'pendulum'}
  return [(env, name, overrides) for env, name, overrides in found
          if env == 'pendulum' or name not in pendulum
          or name in DISCRETE_PATHS]


def _live(agent):
  """Non-zero reward head and critics (they start with zero outputs)."""
  rng = np.random.default_rng(0)
  for head, bias in ((agent.world_model.reward, 1.0), (agent.critic, 0.5),
                     (agent.slow_critic, -0.5)):
    out = getattr(head, 'inner', head).out
    out.kernel.assign(rng.normal(size=out.kernel.shape).astype(np.float32))
    out.bias.assign(np.full(out.bias.shape, bias, np.float32))


def _checksums(agent):
  """{model name: sum of |w| over its variables} after an update."""
  models = {'world_model': agent.world_model, 'actor': agent.actor,
            'critic': agent.critic, 'slow_critic': agent.slow_critic,
            'target_world_model': agent.learner.target.model}
  return {f'weights/{name}': float(sum(
      np.abs(np.asarray(v, np.float64)).sum() for v in model.variables))
      for name, model in models.items()}


def run_case(env, overrides):
  """{'<step index>/<metric>': float} of three train steps."""
  spec = SPECS[env]
  keras.utils.set_random_seed(0)
  config = load_config(os.path.join(ROOT, 'configs', env + '.yaml'),
                       _extra(env) + list(overrides))
  agent = build_agent(config, spec)
  _live(agent)
  rng = np.random.default_rng(1)
  draws = iter(range(100))
  next_batch = lambda: make_batch(spec, rng, 4, 8, first_prob=0.15,
                                  terminal_prob=0.15)
  next_seed = lambda: tf.constant([7, next(draws)], tf.int32)
  numbers = {}
  for i, env_step in enumerate(ENV_STEPS):
    metrics = agent.warmup.update(agent.learner, next_batch, next_seed,
                                  env_step)
    metrics = {k: float(np.asarray(v)) for k, v in metrics.items()}
    metrics.update(_checksums(agent))
    numbers.update({f'{i}/{k}': v for k, v in metrics.items()})
  return numbers


def _recorded_name(name):
  step, metric = name.split('/', 1)
  return f'{step}/{RENAMED.get(metric, metric)}'


@pytest.fixture(scope='module')
def golden():
  with open(FIXTURE) as f:
    return json.load(f)


@pytest.fixture(autouse=True)
def eager():
  """tf.functions run eagerly: the same numbers as traced, without XLA."""
  tf.config.run_functions_eagerly(True)
  yield
  tf.config.run_functions_eagerly(False)


def test_every_alternative_is_recorded(golden):
  assert sorted(golden) == sorted(f'{env}/{name}'
                                  for env, name, _ in cases())


@pytest.mark.parametrize('env, name, overrides', replayed_cases(),
                         ids=[f'{e}-{n}' for e, n, _ in replayed_cases()])
def test_update_matches_recording(golden, env, name, overrides):
  recorded = golden[f'{env}/{name}']
  numbers = run_case(env, overrides)
  got = {_recorded_name(k): v for k, v in numbers.items()}
  missing = sorted(set(recorded) - set(got))
  assert not missing, f'metrics no longer reported: {missing}'
  wrong = {k: (got[k], recorded[k]) for k in sorted(recorded)
           if not np.isclose(got[k], recorded[k], rtol=RTOL, atol=ATOL)}
  assert not wrong, f'{env}/{name}: (now, recorded) {wrong}'


def _write(only_missing: bool = False):
  tf.config.run_functions_eagerly(True)
  numbers = {}
  if only_missing:
    with open(FIXTURE) as f:
      numbers = json.load(f)
  for env, name, overrides in cases():
    if f'{env}/{name}' not in numbers:
      # Under the recorded names, which the test looks the metrics up by.
      numbers[f'{env}/{name}'] = {_recorded_name(k): v for k, v in
                                  run_case(env, overrides).items()}
  os.makedirs(os.path.dirname(FIXTURE), exist_ok=True)
  with open(FIXTURE, 'w') as f:
    json.dump(numbers, f, indent=1, sort_keys=True)
    f.write('\n')


if __name__ == '__main__':
  if sys.argv[1:] not in (['--write'], ['--add']):
    sys.exit('usage: python tests/test_learner_golden.py --write | --add')
  _write(only_missing=sys.argv[1:] == ['--add'])
