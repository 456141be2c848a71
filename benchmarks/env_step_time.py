r"""Milliseconds per agent step of the environment families.

  python -m benchmarks.env_step_time
  python -m benchmarks.env_step_time --steps=500 \
      --cases=atari:Pong,dmc:walker_walk

Each case (an env.id, '+pixels' for env.pixels=true) is made with the
config's env defaults, reset with seed 0, warmed up for 10 steps and then
stepped --steps times with random actions (resets included where episodes
end); the median and quartiles of the per-step wall time are printed as a
markdown table, with the load average, since the machine is shared.
"""

from __future__ import annotations

import os
import time

import numpy as np
from absl import app, flags

from wm_tf.config.schema import EnvConfig
from wm_tf.runtime.env_families import make_family_env

flags.DEFINE_list('cases', ['atari:Pong', 'dmc:cartpole_balance',
                            'dmc:cartpole_balance+pixels',
                            'CartPole-v1+pixels'],
                  "env ids; '+pixels' sets env.pixels=true")
flags.DEFINE_integer('steps', 200, 'Timed steps per case.')
FLAGS = flags.FLAGS


def step_times(case: str, steps: int) -> np.ndarray:
  """Seconds of each of `steps` agent steps of `case`."""
  env_id, _, extra = case.partition('+')
  env = make_family_env(env_id, EnvConfig(id=env_id,
                                          pixels=extra == 'pixels'))
  env.reset(seed=0)
  env.action_space.seed(0)
  times = []
  try:
    for i in range(10 + steps):
      start = time.perf_counter()
      _, _, terminated, truncated, _ = env.step(env.action_space.sample())
      if terminated or truncated:
        env.reset()
      if i >= 10:
        times.append(time.perf_counter() - start)
  finally:
    env.close()
  return np.array(times)


def main(argv):
  del argv
  os.environ.setdefault('SDL_VIDEODRIVER', 'dummy')  # pygame off-screen
  print('| env | observation | ms per step: median | quartiles |')
  print('| --- | --- | --- | --- |')
  for case in FLAGS.cases:
    ms = step_times(case, FLAGS.steps) * 1e3
    q1, median, q3 = np.percentile(ms, [25, 50, 75])
    kind = 'pixels' if case.endswith('+pixels') or case.startswith(
        'atari:') else 'vector'
    print(f'| `{case.split("+")[0]}` | {kind} | {median:.2f} | '
          f'{q1:.2f} - {q3:.2f} |')
  print(f'\nload average: {os.getloadavg()[0]:.2f} '
        f'on {os.cpu_count()} cores')


if __name__ == '__main__':
  app.run(main)
