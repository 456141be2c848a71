"""Bridges to other RL libraries, each an optional extra imported on demand.

Nothing here is imported by `wm_tf` itself, and this package imports none
of its submodules, so a missing optional library only matters to code that
asks for its bridge:

  from wm_tf.interop import tf_agents as wm_tf_agents  # needs tf-agents
"""
