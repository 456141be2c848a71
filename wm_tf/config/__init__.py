"""Configuration: the one place where settings are read, merged and validated.

A run's configuration is a tree of typed dataclasses (`Config` at the root,
`wm_tf.config.schema`). The defaults live there, in code; a YAML file
overrides some of them, and `key.path=value` overrides (from the command
line) override the YAML (`wm_tf.config.loading`, with the type coercion of
`wm_tf.config.coercion`). `load_config` validates everything before any
work starts (`wm_tf.config.validation`): an unknown key, a value of the
wrong type or a value outside its allowed set raises `ConfigError` with one
message naming the key and what is allowed. `python -m wm_tf.config`
prints the reference table of every key (`wm_tf.config.reference`).

Components never see this tree: the builders in `wm_tf.agent.builder` read
it and pass plain arguments.
"""

from wm_tf.config.coercion import parse_override, to_dict, to_yaml
from wm_tf.config.loading import (CONFIGS_DIR, from_dict, load_config,
                                  resolve_config_path)
from wm_tf.config.reference import reference_markdown, reference_rows
from wm_tf.config.schema import (ActingConfig, ActorConfig, Config,
                                 ConfigError, CriticConfig, DynamicsConfig,
                                 EncoderConfig, EnvConfig, HeadsConfig,
                                 ImaginationConfig, LossScalesConfig,
                                 MLPConfig, MPCConfig, OptimizerConfig,
                                 OptimizersConfig, ReplayConfig,
                                 RepresentationConfig, ReturnsConfig,
                                 RunConfig, ScalarHeadConfig,
                                 WarmupConfig, WarmupPhaseConfig,
                                 WorldModelConfig, lookup)
from wm_tf.config.validation import REPRESENTATION_BETA

__all__ = [
    'ActingConfig',
    'ActorConfig',
    'CONFIGS_DIR',
    'Config',
    'ConfigError',
    'CriticConfig',
    'DynamicsConfig',
    'EncoderConfig',
    'EnvConfig',
    'HeadsConfig',
    'ImaginationConfig',
    'LossScalesConfig',
    'MLPConfig',
    'MPCConfig',
    'OptimizerConfig',
    'OptimizersConfig',
    'REPRESENTATION_BETA',
    'ReplayConfig',
    'RepresentationConfig',
    'ReturnsConfig',
    'RunConfig',
    'ScalarHeadConfig',
    'WarmupConfig',
    'WarmupPhaseConfig',
    'WorldModelConfig',
    'from_dict',
    'load_config',
    'lookup',
    'parse_override',
    'reference_markdown',
    'reference_rows',
    'resolve_config_path',
    'to_dict',
    'to_yaml',
]
