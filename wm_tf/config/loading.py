"""Reading a config: YAML file, then `key.path=value` overrides, validated."""

from __future__ import annotations

import os
from typing import Optional, Sequence

import yaml

from wm_tf.config import coercion, presets, validation
from wm_tf.config.schema import Config, ConfigError


# Keys renamed since runs were saved with them: (section, old, new). Saved
# run configs (`config.yaml` of a run directory) still load and resume.
RENAMED_KEYS = (('warmup', 'critic_real_return_mix', 'real_ratio'),)


def _rename_old_keys(data: dict) -> dict:
  data = dict(data)
  for section, old, new in RENAMED_KEYS:
    values = data.get(section)
    if isinstance(values, dict) and old in values:
      values = dict(values)
      if new in values:
        raise ConfigError(f'Config keys {section}.{old} and {section}.{new} '
                          f'conflict: {old} is the old name of {new}; '
                          f'allowed: {section}.{new} alone.')
      values[new] = values.pop(old)
      data[section] = values
  return data


def from_dict(data: dict) -> Config:
  """Validates a plain dict (YAML names) into a `Config`.

  The presets named by its key `presets`, if any, are merged beneath it
  first (`wm_tf.config.presets`).
  """
  data = _rename_old_keys(presets.apply_presets(data))
  config = coercion.build(Config, data, '')
  validation.fill_defaults_by_type(config)
  validation.check_ranges(config)
  validation.check_world_model_options(config, data)
  return config


# The configs/ folder beside the wm_tf package (a source checkout, as
# `pip install -e .` leaves it), where the launchers' default --config is.
CONFIGS_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))), 'configs')


def resolve_config_path(path: str) -> str:
  """`path` if it exists; else the same relative path, or file name, in
  the source checkout (so `--config=configs/cartpole.yaml` works from any
  working directory); else `path` unchanged."""
  if os.path.exists(path) or os.path.isabs(path):
    return path
  for candidate in (os.path.join(os.path.dirname(CONFIGS_DIR), path),
                    os.path.join(CONFIGS_DIR, path)):
    if os.path.exists(candidate):
      return candidate
  return path


def load_config(path: Optional[str] = None,
                overrides: Sequence[str] = ()) -> Config:
  """Reads a YAML file, applies `key.path=value` overrides and validates.

  Args:
    path: a YAML file, or None for the defaults alone.
    overrides: strings `key.path=value`, applied in order after the file.

  Returns:
    The validated `Config`.

  Raises:
    ConfigError: the file is missing or malformed, or a key or value is not
      allowed; the message names the key and what is allowed.
  """
  data: dict = {}
  if path is not None:
    try:
      with open(resolve_config_path(path)) as f:
        data = yaml.safe_load(f) or {}
    except FileNotFoundError:
      shipped = sorted(n for n in os.listdir(CONFIGS_DIR)
                       if n.endswith('.yaml')) if os.path.isdir(
                           CONFIGS_DIR) else []
      raise ConfigError(
          f'Config file {path!r} does not exist (looked in the working '
          f'directory and in {CONFIGS_DIR}, which holds '
          f'{", ".join(shipped) or "nothing"}).') from None
    except yaml.YAMLError as e:
      raise ConfigError(f'Config file {path!r} is not valid YAML: {e}') from None
    if not isinstance(data, dict):
      raise ConfigError(f'Config file {path!r} must hold a mapping of keys.')
  for text in overrides:
    key, value = coercion.parse_override(text)
    coercion.set_path(data, key, value)
  return from_dict(data)

