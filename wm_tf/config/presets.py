"""Named presets: partial configs composed in order before a file's keys.

A config names its presets in the key `presets` (a list); each is a
mapping in `presets.yaml` beside this module, merged key by key (nested
mappings merge, anything else is replaced) in the order given, and the
config's own keys are merged last. So a config file holds what is its
own, and sizes and recipes are written once.
"""

from __future__ import annotations

import difflib
import os
from typing import Any, Dict, List

import yaml

from wm_tf.config.schema import ConfigError

PRESETS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                            'presets.yaml')


def load_presets(path: str = PRESETS_FILE) -> Dict[str, dict]:
  """{name: partial config} of the presets file."""
  with open(path) as f:
    presets = yaml.safe_load(f) or {}
  for name, values in presets.items():
    if not isinstance(values, dict):
      raise ConfigError(f'Preset {name!r} in {path} must be a mapping of '
                        f'config keys, got {values!r}.')
  return presets


def merge(base: dict, update: dict) -> dict:
  """A new dict: `update` over `base`, nested mappings merged key by key."""
  merged = dict(base)
  for key, value in update.items():
    if isinstance(value, dict) and isinstance(merged.get(key), dict):
      merged[key] = merge(merged[key], value)
    else:
      merged[key] = value
  return merged


def _names(value: Any) -> List[str]:
  if not isinstance(value, list) or not all(isinstance(v, str)
                                            for v in value):
    raise ConfigError(f'Config key presets must be a list of preset names, '
                      f'e.g. [size_S, discrete_dyna]; got {value!r}.')
  return value


def apply_presets(data: dict, presets: Dict[str, dict] = None) -> dict:
  """`data` with the presets its key `presets` names merged beneath it.

  Raises:
    ConfigError: `presets` is not a list of names, or names one that does
      not exist (the message lists those that do).
  """
  if 'presets' not in data:
    return data
  presets = load_presets() if presets is None else presets
  data = dict(data)
  merged: dict = {}
  for name in _names(data.pop('presets')):
    if name not in presets:
      close = difflib.get_close_matches(name, list(presets), n=2)
      hint = f' Did you mean {", ".join(map(repr, close))}?' if close else ''
      raise ConfigError(f'Unknown preset {name!r} (config key presets).'
                        f'{hint} Allowed: {", ".join(presets)}.')
    merged = merge(merged, presets[name])
  return merge(merged, data)
