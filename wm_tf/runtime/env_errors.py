"""How a bad `env.id`, env option or space is reported: one line each."""

from __future__ import annotations

import difflib
from typing import Iterable


class UnsupportedEnvironment(ValueError):
  """An environment id or space that wm_tf cannot train on."""


def did_you_mean(name: str, known: Iterable[str]) -> str:
  """' Did you mean 'a', 'b'?' for the names of `known` close to `name`."""
  close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
  return f' Did you mean {", ".join(map(repr, close))}?' if close else ''


def unknown_name(what: str, name: str, known: Iterable[str],
                 allowed: str) -> UnsupportedEnvironment:
  """`name` is not one of `known`: the error names it, close matches, and
  what is allowed."""
  return UnsupportedEnvironment(
      f'Unknown {what} {name!r} (config key env.id).'
      f'{did_you_mean(name, known)} Allowed: {allowed}.')


def missing_package(env_id: str, package: str,
                    extra: str) -> UnsupportedEnvironment:
  """`env_id` needs the optional `package`, installed by pip extra `extra`."""
  return UnsupportedEnvironment(
      f'Environment {env_id!r} (config key env.id) needs {package}, which is '
      f"not installed: pip install -e '.[{extra}]' (or pip install "
      f'{package}).')
