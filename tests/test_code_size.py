"""Size limits of wm_tf/: no module over 500 lines, no function over 60.

A module or function past its limit does more than one thing; split it by
concept. `ALLOWED` names the files being split elsewhere; an entry that
no longer exceeds a limit must leave the list.
"""

import ast
import pathlib
from typing import List

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODULE_LINES = 500
FUNCTION_LINES = 60

# Files allowed over the limits while they are being split (none now).
ALLOWED = set()


def oversized(path: pathlib.Path, root: pathlib.Path) -> List[str]:
  """One message per limit the file at `path` exceeds."""
  source = path.read_text()
  name = path.relative_to(root).as_posix()
  problems = []
  lines = len(source.splitlines())
  if lines > MODULE_LINES:
    problems.append(f'{name} has {lines} lines (limit {MODULE_LINES})')
  for node in ast.walk(ast.parse(source, name)):
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
      length = node.end_lineno - node.lineno + 1
      if length > FUNCTION_LINES:
        problems.append(f'{name}:{node.lineno}: {node.name} has {length} '
                        f'lines (limit {FUNCTION_LINES})')
  return problems


def _modules(root: pathlib.Path):
  return sorted((root / 'wm_tf').rglob('*.py'))


def test_modules_and_functions_are_within_the_limits():
  problems = [problem for path in _modules(ROOT)
              if path.relative_to(ROOT).as_posix() not in ALLOWED
              for problem in oversized(path, ROOT)]
  assert not problems, '\n'.join(problems)


def test_every_allowed_file_still_needs_its_exception():
  for name in sorted(ALLOWED):
    path = ROOT / name
    assert not path.exists() or oversized(path, ROOT), (
        f'{name} is within the limits now: remove it from ALLOWED')


def test_an_oversized_module_and_function_are_caught(tmp_path):
  package = tmp_path / 'wm_tf'
  package.mkdir()
  body = ''.join(f'  x{i} = {i}\n' for i in range(FUNCTION_LINES))
  (package / 'long_function.py').write_text(f'def f():\n{body}')
  (package / 'long_module.py').write_text('x = 1\n' * (MODULE_LINES + 1))
  (package / 'fine.py').write_text(
      'def f():\n' + body[:body.rindex('  x')] + '\nx = 1\n')
  found = {path.name: oversized(path, tmp_path) for path in _modules(tmp_path)}
  assert found['fine.py'] == []
  assert found['long_function.py'] == [
      f'wm_tf/long_function.py:1: f has {FUNCTION_LINES + 1} lines '
      f'(limit {FUNCTION_LINES})']
  assert found['long_module.py'] == [
      f'wm_tf/long_module.py has {MODULE_LINES + 1} lines '
      f'(limit {MODULE_LINES})']
