"""A registry maps the YAML `type` string of a family to its class."""

from __future__ import annotations

from typing import Callable, Dict, TypeVar

T = TypeVar('T')


class Registry:
  """Named constructors of one family (e.g. dynamics models).

  >>> DYNAMICS = Registry('dynamics')
  >>> @DYNAMICS.register('gaussian')
  ... class GaussianDynamics: ...
  >>> DYNAMICS.get('gaussian')
  """

  def __init__(self, family: str):
    self.family = family
    self._entries: Dict[str, Callable] = {}

  def register(self, name: str) -> Callable[[T], T]:
    def decorator(constructor: T) -> T:
      if name in self._entries:
        raise ValueError(f'{self.family} type {name!r} is registered twice.')
      self._entries[name] = constructor
      return constructor
    return decorator

  def get(self, name: str) -> Callable:
    if name not in self._entries:
      raise ValueError(
          f'Unknown {self.family} type {name!r}; allowed: '
          f'{", ".join(sorted(self._entries))}.')
    return self._entries[name]

  def names(self) -> tuple:
    return tuple(sorted(self._entries))

  def registered(self) -> tuple:
    """The names in the order they were registered."""
    return tuple(self._entries)
