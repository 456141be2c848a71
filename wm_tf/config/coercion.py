"""YAML values to typed config values: coercion, unknown keys, overrides.

`build(cls, data, path)` turns a plain mapping (YAML key names) into the
dataclass `cls`, checking every value against its annotation; `to_dict` is
its inverse. Only types are checked here; ranges and combinations are
`wm_tf.config.validation`'s.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from typing import Any, Literal

import yaml

from wm_tf.config.schema import Config, ConfigError, yaml_name


def _describe(tp: Any) -> str:
  """A human description of an annotation, for error messages."""
  origin = typing.get_origin(tp)
  if origin is Literal:
    return 'one of ' + ', '.join(repr(a) for a in typing.get_args(tp))
  if origin is typing.Union:
    return ' or '.join(_describe(a) for a in typing.get_args(tp))
  if tp is type(None):
    return 'null'
  if dataclasses.is_dataclass(tp) or origin is dict:
    return 'a mapping'
  if origin is tuple:
    item = typing.get_args(tp)[0]
    if dataclasses.is_dataclass(item):
      keys = ', '.join(yaml_name(f.name) for f in dataclasses.fields(item))
      return f'a list of mappings with keys {keys}'
    return f'a list of {_describe(item)}'
  return {int: 'an integer', float: 'a number', bool: 'true or false',
          str: 'a string'}.get(tp, str(tp))


def _coerce(value: Any, tp: Any, path: str) -> Any:
  """Checks `value` against annotation `tp`, converting int -> float."""
  origin = typing.get_origin(tp)
  if dataclasses.is_dataclass(tp):
    return build(tp, value, path)
  if origin is dict:  # Dict[str, Any]: a YAML mapping passed on as it is
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
      return dict(value)
  elif origin is tuple:  # Tuple[X, ...]: a YAML list of X
    if isinstance(value, (list, tuple)):
      item = typing.get_args(tp)[0]
      return tuple(_coerce(v, item, f'{path}[{i}]')
                   for i, v in enumerate(value))
  elif origin is Literal:
    if value in typing.get_args(tp):
      return value
  elif origin is typing.Union:
    for option in typing.get_args(tp):
      if option is type(None):
        if value is None:
          return None
        continue
      try:
        return _coerce(value, option, path)
      except ConfigError:
        pass
  elif tp is bool:
    if isinstance(value, bool):
      return value
  elif tp is int:
    if isinstance(value, int) and not isinstance(value, bool):
      return value
    if isinstance(value, float) and value.is_integer():
      return int(value)  # 1.0e4 in YAML is a float
    if isinstance(value, str):  # and 1e4 a string
      try:
        number = float(value)
      except ValueError:
        number = None
      if number is not None and number.is_integer():
        return int(number)
  elif tp is float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
      return float(value)
    if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
      try:
        return float(value)
      except ValueError:
        pass
  elif tp is str:
    if isinstance(value, str):
      return value
  raise ConfigError(
      f'Config key {path!r} has value {value!r}; allowed: {_describe(tp)}.')


def build(cls: type, data: Any, path: str) -> Any:
  """Builds dataclass `cls` from a mapping, rejecting unknown keys."""
  if data is None:
    data = {}
  if isinstance(data, cls):
    return data
  where = path or 'the top level'
  if not isinstance(data, dict):
    raise ConfigError(
        f'Config key {where!r} must be a mapping of keys, got {data!r}.')
  hints = typing.get_type_hints(cls)
  fields = {yaml_name(f.name): f for f in dataclasses.fields(cls)}
  kwargs = {}
  for key, value in data.items():
    if key not in fields:
      full = f'{path}.{key}' if path else str(key)
      close = difflib.get_close_matches(str(key), list(fields), n=1)
      hint = f' Did you mean {close[0]!r}?' if close else ''
      raise ConfigError(
          f'Unknown config key {full!r}.{hint} Allowed keys in {where}: '
          f'{", ".join(sorted(fields))}.')
    field = fields[key]
    full = f'{path}.{key}' if path else key
    kwargs[field.name] = _coerce(value, hints[field.name], full)
  missing = [yaml_name(f.name) for f in dataclasses.fields(cls)
             if f.name not in kwargs and f.default is dataclasses.MISSING
             and f.default_factory is dataclasses.MISSING]
  if missing:
    raise ConfigError(
        f'Config key {where!r} is missing required key(s) '
        f'{", ".join(missing)}.')
  return cls(**kwargs)


def set_path(tree: dict, path: str, value: Any) -> None:
  keys = path.split('.')
  node = tree
  for key in keys[:-1]:
    child = node.get(key)
    if child is None:
      child = node[key] = {}
    if not isinstance(child, dict):
      raise ConfigError(
          f'Override {path!r}: {key!r} holds a value, not a mapping.')
    node = child
  node[keys[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
  """Parses `key.path=value`; the value is read as YAML (1e-4, true, [1,2])."""
  if '=' not in text:
    raise ConfigError(
        f'Override {text!r} must have the form key.path=value, '
        "e.g. 'actor.entropy=1e-3'.")
  path, raw = text.split('=', 1)
  path = path.strip()
  if not path:
    raise ConfigError(f'Override {text!r} has an empty key.')
  try:
    value = yaml.safe_load(raw)
  except yaml.YAMLError as e:
    raise ConfigError(f'Override {text!r}: value is not valid YAML: {e}')
  return path, value


def to_dict(config: Any) -> dict:
  """The config as a plain dict with YAML key names (for saving)."""
  out = {}
  for field in dataclasses.fields(config):
    value = getattr(config, field.name)
    if dataclasses.is_dataclass(value):
      value = to_dict(value)
    elif isinstance(value, tuple):
      value = [to_dict(v) if dataclasses.is_dataclass(v) else v
               for v in value]
    out[yaml_name(field.name)] = value
  return out


def to_yaml(config: Config) -> str:
  return yaml.safe_dump(to_dict(config), sort_keys=False)


