"""The design lab's environments, registered with gymnasium on import.

Each is small, fully observed and seeded, with its true transition law
written in its docstring and exposed as `true_next_distribution(state,
action)` (see `wm_tf.lab.lab_env`), so the lab can compare what a world
model imagines with what the environment does (docs/design_lab.md).
"""

import gymnasium as gym

# id -> (entry point, max_episode_steps, kwargs)
LAB_ENVS = {
    'wm_tf/Dice-v0': ('wm_tf.lab.dice:Dice', 20, {}),
    'wm_tf/Bounce-v0': ('wm_tf.lab.bounce:Bounce', 40, {}),
    'wm_tf/GridWorld-v0': ('wm_tf.lab.grid_world:GridWorld', 30, {}),
    'wm_tf/OODProbe-v0': ('wm_tf.lab.ood_probe:OODProbe', 10, {}),
    'wm_tf/Corridor-short-v0': ('wm_tf.lab.corridor:Corridor', 20,
                                {'length': 6}),
    'wm_tf/Corridor-long-v0': ('wm_tf.lab.corridor:Corridor', 200,
                               {'length': 60}),
}

for _id, (_entry, _steps, _kwargs) in LAB_ENVS.items():
  if _id not in gym.registry:
    gym.register(_id, entry_point=_entry, max_episode_steps=_steps,
                 kwargs=_kwargs)
