"""The config saved beside a run (`logdir/config.yaml`) against the current one.

A resumed run must have the config it was started with: keys that differ
raise `ConfigMismatch` listing each as 'key: saved -> current', unless the
caller allows the change.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Mapping

import yaml

from wm_tf import config as config_lib


class ConfigMismatch(config_lib.ConfigError):
  """A resumed run's config differs from the one saved in its directory."""


def _flatten(tree: Mapping[str, Any], prefix: str = '') -> Dict[str, Any]:
  flat = {}
  for key, value in tree.items():
    path = f'{prefix}{key}'
    if isinstance(value, dict):
      flat.update(_flatten(value, path + '.'))
    else:
      flat[path] = value
  return flat


def config_differences(saved: Mapping[str, Any], current: Mapping[str, Any]
                       ) -> List[str]:
  """Dotted keys whose values differ between two config dicts (YAML names).

  Returns lines 'key: saved -> current', sorted by key; a key missing on
  one side shows as '(absent)'.
  """
  old, new = _flatten(saved), _flatten(current)
  missing = '(absent)'
  return [f'{key}: {old.get(key, missing)!r} -> {new.get(key, missing)!r}'
          for key in sorted(set(old) | set(new))
          if old.get(key, missing) != new.get(key, missing)]


def check_saved_config(logdir: str, config: config_lib.Config,
                       allow_change: bool = False) -> List[str]:
  """Compares `config` with `logdir/config.yaml`, if there is one.

  Returns:
    The differing keys as 'key: saved -> current' lines (empty for a new
    run directory or the same config).

  Raises:
    ConfigMismatch: they differ and `allow_change` is false; the message
      lists every differing key.
  """
  path = os.path.join(logdir, 'config.yaml')
  if not os.path.exists(path):
    return []
  with open(path) as f:
    try:
      saved = yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
      raise ConfigMismatch(
          f'{path} (the config of the run being resumed) is not valid YAML: '
          f'{e}') from None
  try:
    # Keys added to the schema since the run was saved take their defaults.
    saved = config_lib.to_dict(config_lib.from_dict(saved))
  except config_lib.ConfigError:
    pass  # compare as written: unknown or invalid keys show as differences
  differences = config_differences(saved, config_lib.to_dict(config))
  if differences and not allow_change:
    raise ConfigMismatch(
        f'{logdir} holds a run started with a different config '
        f'({len(differences)} key(s) differ, saved -> now): '
        f'{"; ".join(differences)}. Resume with the same config, choose a '
        'new --logdir, or pass --allow_config_change to continue with the '
        'new one.')
  return differences
