"""The reference table of every config key (docs/configuration.md)."""

from __future__ import annotations

import dataclasses
import inspect
import re

import yaml

from wm_tf.config.schema import Config, yaml_name


def reference_rows(cls: type = Config, prefix: str = '') -> list:
  """(yaml key path, default, comment) for every leaf key, in schema order.

  The comment is the one written beside the field in this module (the
  schema is its own documentation); `python -m wm_tf.config` prints them as
  the markdown table of docs/configuration.md.
  """
  comments = {}
  for klass in reversed(cls.__mro__):
    if not dataclasses.is_dataclass(klass):
      continue
    pending = []
    for line in inspect.getsource(klass).splitlines():
      stripped = line.strip()
      if stripped.startswith('#'):
        pending.append(stripped.lstrip('#').strip())
        continue
      match = re.match(r'(\w+)\s*:[^#]*?(?:#\s*(.*))?$', stripped)
      if match and not stripped.startswith(('def ', 'class ', '@')):
        text = ' '.join(pending + ([match.group(2)] if match.group(2) else []))
        if text:
          comments[match.group(1)] = text
      pending = []
  rows = []
  instance = cls()
  for field in dataclasses.fields(cls):
    path = prefix + yaml_name(field.name)
    value = getattr(instance, field.name)
    if dataclasses.is_dataclass(value):
      rows.extend(reference_rows(type(value), path + '.'))
    else:
      rows.append((path, value, comments.get(field.name, '')))
  return rows


def reference_markdown() -> str:
  lines = ['| key | default | meaning |', '| --- | --- | --- |']
  for path, default, comment in reference_rows():
    shown = yaml.safe_dump(default, default_flow_style=True).strip()
    shown = shown.removesuffix('...').strip()
    lines.append(f'| `{path}` | `{shown}` | {comment} |')
  return '\n'.join(lines)

