"""The layers of docs/design.md: a module imports its own and lower layers.

1 math and specs, 2 components, 3 agent, 4 runtime, 5 launch. Every import
of every module in wm_tf/ (and launch/) is read with `ast`, those inside
functions included, and resolved to the wm_tf module it names.
"""

import ast
import pathlib
from typing import List, Optional

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

NAMES = {1: 'math and specs', 2: 'components', 3: 'agent', 4: 'runtime',
         5: 'launch'}

# Dotted prefixes, longest match wins. A module under none of them fails
# `test_every_module_has_a_layer`, so a new module must be given one.
LAYERS = {
    'wm_tf': 1,  # the package itself (its __init__)
    'wm_tf.specs': 1,
    'wm_tf.returns': 1,
    'wm_tf.losses': 1,
    'wm_tf.distributions': 1,
    'wm_tf.quantiles': 1,
    'wm_tf.registry': 1,
    'wm_tf.replicas': 1,
    'wm_tf.config': 1,
    'wm_tf.components': 2,
    'wm_tf.world_model': 3,
    'wm_tf.agent': 3,
    'wm_tf.agent.symlog': 1,  # symlog-space wrappers of any model
    'wm_tf.runtime': 4,
    'wm_tf.interop': 4,
    'wm_tf.lab': 4,  # environments, and probes of a trained agent
    'wm_tf.lab.measures': 1,  # distances between sample sets, AUROC
    'launch': 5,
}


def layer_of(module: str, layers=None) -> Optional[int]:
  layers = LAYERS if layers is None else layers
  parts = module.split('.')
  for end in range(len(parts), 0, -1):
    prefix = '.'.join(parts[:end])
    if prefix in layers:
      return layers[prefix]
  return None


def module_name(path: pathlib.Path, root: pathlib.Path) -> str:
  parts = list(path.relative_to(root).with_suffix('').parts)
  if parts[-1] == '__init__':
    parts = parts[:-1]
  return '.'.join(parts)


def modules(root: pathlib.Path, packages=('wm_tf', 'launch')):
  """(dotted name, path) of every .py file under `packages` of `root`."""
  for package in packages:
    for path in sorted((root / package).rglob('*.py')):
      yield module_name(path, root), path


def imported_modules(path: pathlib.Path, name: str, known: set) -> List[tuple]:
  """(line, imported dotted module) for every import in the file.

  `from a import b` names module a.b when a.b is a module of the tree
  (`known`), else a. Relative imports are resolved against `name`.
  """
  tree = ast.parse(path.read_text(), str(path))
  package = name if path.name == '__init__.py' else name.rpartition('.')[0]
  found = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      found.extend((node.lineno, alias.name) for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ''
      if node.level:
        anchor = package.split('.')
        anchor = anchor[:len(anchor) - (node.level - 1)]
        base = '.'.join(anchor + ([base] if base else []))
      for alias in node.names:
        full = f'{base}.{alias.name}'
        found.append((node.lineno, full if full in known else base))
  return found


def upward_imports(root: pathlib.Path, layers=None,
                   packages=('wm_tf', 'launch')) -> List[str]:
  """One message per import of a module from a higher layer."""
  found = dict(modules(root, packages))
  known = set(found)
  errors = []
  for name, path in found.items():
    own = layer_of(name, layers)
    for line, target in imported_modules(path, name, known):
      theirs = layer_of(target, layers)
      if own is None or theirs is None or theirs <= own:
        continue
      errors.append(
          f'{path.relative_to(root)}:{line}: {name} (layer {own}, '
          f'{NAMES[own]}) imports {target} (layer {theirs}, {NAMES[theirs]}); '
          f'a module may import only its own layer and those below.')
  return errors


def test_every_module_has_a_layer():
  missing = [name for name, _ in modules(ROOT) if layer_of(name) is None]
  assert not missing, f'modules without a layer in LAYERS: {missing}'


def test_no_module_imports_a_higher_layer():
  errors = upward_imports(ROOT)
  assert not errors, '\n'.join(errors)


def _package(root: pathlib.Path, files: dict) -> None:
  for relative, text in files.items():
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize('source', [
    'from wm_tf.runtime.environments import EnvSpec\n',
    'import wm_tf.runtime.environments\n',
    'from wm_tf.runtime import environments\n',
    'from ..runtime import environments\n',
    'def build():\n  from wm_tf.runtime.environments import EnvSpec\n',
])
def test_a_planted_upward_import_is_caught(tmp_path, source):
  _package(tmp_path, {
      'wm_tf/__init__.py': '',
      'wm_tf/agent/__init__.py': '',
      'wm_tf/agent/planted.py': source,
      'wm_tf/runtime/__init__.py': '',
      'wm_tf/runtime/environments.py': 'EnvSpec = None\n',
  })
  errors = upward_imports(tmp_path)
  assert len(errors) == 1, errors
  message = errors[0]
  for part in ('wm_tf.agent.planted (layer 3, agent)',
               'wm_tf.runtime.environments (layer 4, runtime)'):
    assert part in message, message


def test_imports_of_the_same_or_a_lower_layer_pass(tmp_path):
  _package(tmp_path, {
      'wm_tf/__init__.py': '',
      'wm_tf/specs.py': '',
      'wm_tf/agent/__init__.py': '',
      'wm_tf/agent/builder.py': ('from wm_tf.specs import EnvSpec\n'
                                 'from wm_tf.agent import policy\n'),
      'wm_tf/agent/policy.py': 'from wm_tf import specs\n',
  })
  assert upward_imports(tmp_path) == []


def test_runtime_still_exports_the_specs():
  from wm_tf import specs
  from wm_tf.runtime import environments
  assert environments.EnvSpec is specs.EnvSpec

