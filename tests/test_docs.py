"""The docs stay true: README.md and docs/*.md against the code.

- docs/configuration.md is the output of `wm_tf.config.reference_markdown()`;
- every documented `python -m launch.<name> ...` or `python -m
  benchmarks.<name> ...` command parses with that module's absl flags, and
  each `--set key=value` in it names a config key (a `launch.train` command
  also loads its config with its overrides);
- every relative link between the pages points to a file (and heading)
  that exists, and every docs page is linked from the README;
- the README's quick start holds the command CI runs.

Commands are read from fenced shell blocks (line continuations joined,
comments dropped, `&&`, `;` and `|` chains split) and from inline code spans
outside them. absl flags are global per process, so each module's commands
are parsed in a subprocess of their own.
"""

import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from wm_tf import config as config_lib

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO_ROOT, 'README.md')
DOCS_DIR = os.path.join(REPO_ROOT, 'docs')
CONFIGURATION_PAGE = os.path.join(DOCS_DIR, 'configuration.md')
# Packages of this repository whose `python -m` commands must name a module
# that exists; those of FLAG_PACKAGES are parsed with their absl flags too.
REPO_PACKAGES = ('launch', 'benchmarks', 'wm_tf')
FLAG_PACKAGES = ('launch', 'benchmarks')
SHELL_LANGUAGES = ('', 'bash', 'sh', 'shell', 'console')
CHAIN_TOKENS = ('&&', '||', ';', '|', '&')

_FENCE = re.compile(r'^ *```([\w-]*)[^\n]*\n(.*?)^ *```[ \t]*$', re.M | re.S)
_INLINE_CODE = re.compile(r'`([^`]+)`')
_LINK = re.compile(r'!?\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)')
_HEADING = re.compile(r'^#{1,6}\s+(.*?)\s*#*\s*$', re.M)


def doc_paths(root=REPO_ROOT):
  """README.md and every docs/*.md page under `root`."""
  return [os.path.join(root, 'README.md')] + sorted(
      glob.glob(os.path.join(root, 'docs', '*.md')))


def page_name(path):
  """'README.md', 'docs/x.md': a page as the repository names it."""
  parent = os.path.basename(os.path.dirname(path))
  return f'docs/{os.path.basename(path)}' if parent == 'docs' else (
      os.path.basename(path))


def read(path):
  with open(path, encoding='utf-8') as f:
    return f.read()


def split_fences(text):
  """([(language, body)] of the fenced blocks, the text outside them)."""
  blocks = [(m.group(1).lower(), m.group(2)) for m in _FENCE.finditer(text)]
  return blocks, _FENCE.sub('', text)


def shell_commands(script):
  """Simple commands (token lists) of a shell script.

  Lines ending in a backslash are joined with the next; `#` comments are
  dropped; `a && b`, `a; b`, `a | b` give two commands.
  """
  script = re.sub(r'\\\n', ' ', script)
  commands = []
  for line in script.splitlines():
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = '#'
    command = []
    for token in lexer:
      if token in CHAIN_TOKENS:
        commands.append(command)
        command = []
      else:
        command.append(token)
    commands.append(command)
  return [c for c in commands if c]


def python_module_command(tokens):
  """(module, args) of a `python -m module args...` command, or None.

  Wrappers in front (`/usr/bin/time -v python -m ...`) are skipped.
  """
  for i, token in enumerate(tokens[:-2]):
    if os.path.basename(token) in ('python', 'python3') and (
        tokens[i + 1] == '-m'):
      return tokens[i + 2], tokens[i + 3:]
  return None


def documented_commands(paths):
  """[(page, module, args, source text)] of every `python -m` command."""
  found = []
  for path in paths:
    page = page_name(path)
    blocks, prose = split_fences(read(path))
    scripts = [body for language, body in blocks
               if language in SHELL_LANGUAGES]
    scripts += [span.replace('\n', ' ')
                for span in _INLINE_CODE.findall(prose)
                if 'python -m ' in span.replace('\n', ' ')]
    for script in scripts:
      for tokens in shell_commands(script):
        parsed = python_module_command(tokens)
        if parsed:
          found.append((page, parsed[0], parsed[1], ' '.join(tokens)))
  return found


# Runs in a fresh interpreter: imports one module (which defines its absl
# flags) and parses each argv of a JSON list with them.
_PARSE_SCRIPT = r'''
import importlib, json, sys
from absl import flags
module, argvs = sys.argv[1], json.loads(sys.argv[2])
loaded = importlib.import_module(module)
# Modules that tests import beside others define their flags on run.
getattr(loaded, 'define_flags', lambda: None)()
FLAGS = flags.FLAGS
results = []
for argv in argvs:
  FLAGS.unparse_flags()
  result = {'error': None}
  try:
    rest = FLAGS([module] + argv, known_only=False)
    if len(rest) > 1:
      result['error'] = f'unexpected positional arguments {rest[1:]}'
    else:
      for name in ('set', 'config', 'seed'):
        if name in FLAGS:
          result[name] = FLAGS[name].value
  except flags.Error as e:
    result['error'] = f'{type(e).__name__}: {e}'
  results.append(result)
print(json.dumps(results))
'''


def parse_with_flags(module, argvs, cwd=REPO_ROOT):
  """One result dict per argv: 'error' (None if it parsed) and the values
  of the flags `set`, `config` and `seed` where the module defines them."""
  process = subprocess.run(
      [sys.executable, '-c', _PARSE_SCRIPT, module, json.dumps(argvs)],
      cwd=cwd, capture_output=True, text=True, timeout=120,
      env=dict(os.environ, PYTHONPATH=cwd, TF_CPP_MIN_LOG_LEVEL='2'))
  assert process.returncode == 0, (
      f'importing {module} to parse its documented commands failed:\n'
      f'{process.stderr[-3000:]}')
  return json.loads(process.stdout.strip().splitlines()[-1])


def config_key_problem(override, leaf_keys):
  """Why `--set override` names no config key, or None."""
  try:
    key, _ = config_lib.parse_override(override)
  except config_lib.ConfigError as e:
    return str(e)
  if key in leaf_keys or any(k.startswith(key + '.') for k in leaf_keys):
    return None
  return f'--set {override}: no config key {key!r}'


def command_problems(paths, root=REPO_ROOT):
  """Every documented command that would not parse, one line each."""
  commands = documented_commands(paths)
  leaf_keys = {path for path, _, _ in config_lib.reference_rows()}
  problems = []
  by_module = {}
  for command in commands:
    by_module.setdefault(command[1], []).append(command)
  for module, group in sorted(by_module.items()):
    package = module.split('.')[0]
    if package not in REPO_PACKAGES:  # python -m pip, ...
      continue
    source = os.path.join(root, *module.split('.'))
    if not (os.path.exists(source + '.py') or
            os.path.exists(os.path.join(source, '__main__.py'))):
      problems.extend(f'{page}: `{text}`: no module {module}'
                      for page, _, _, text in group)
      continue
    if package not in FLAG_PACKAGES:
      continue
    results = parse_with_flags(module, [args for _, _, args, _ in group], root)
    for (page, _, _, text), result in zip(group, results):
      where = f'{page}: `{text}`'
      if result['error']:
        problems.append(f'{where}: {result["error"]}')
        continue
      overrides = list(result.get('set') or [])
      for override in overrides:
        problem = config_key_problem(override, leaf_keys)
        if problem:
          problems.append(f'{where}: {problem}')
      if module == 'launch.train' and not any(
          config_key_problem(o, leaf_keys) for o in overrides):
        if result.get('seed') is not None:
          overrides.append(f'seed={result["seed"]}')
        try:
          config_lib.load_config(os.path.join(root, result['config']),
                                 overrides)
        except config_lib.ConfigError as e:
          problems.append(f'{where}: {e}')
  return problems


def heading_anchor(heading):
  """GitHub's anchor of a markdown heading."""
  text = re.sub(r'[`*_]|\[([^\]]*)\]\([^)]*\)', r'\1', heading).strip().lower()
  text = re.sub(r'[^\w\- ]', '', text)
  return text.replace(' ', '-')


def link_problems(paths):
  """Every relative link (or image) whose file or heading does not exist."""
  problems = []
  for path in paths:
    _, prose = split_fences(read(path))
    prose = _INLINE_CODE.sub('', prose)
    for target in _LINK.findall(prose):
      if re.match(r'[a-z][a-z0-9+.-]*:', target):  # http:, https:, mailto:
        continue
      file_part, _, fragment = target.partition('#')
      linked = (os.path.normpath(os.path.join(os.path.dirname(path), file_part))
                if file_part else path)
      where = page_name(path)
      if not os.path.exists(linked):
        problems.append(f'{where}: link {target!r}: no file {linked}')
      elif fragment and linked.endswith('.md'):
        anchors = {heading_anchor(h) for h in _HEADING.findall(
            split_fences(read(linked))[1])}
        if fragment not in anchors:
          problems.append(f'{where}: link {target!r}: no heading '
                          f'#{fragment} in {os.path.basename(linked)}')
  return problems


def reference_table(page_text):
  """The configuration page's table: its lines from the '| key' header on."""
  lines = page_text.splitlines()
  start = lines.index('| key | default | meaning |')
  table = []
  for line in lines[start:]:
    if not line.startswith('|'):
      break
    table.append(line)
  return '\n'.join(table)


def test_configuration_page_keys_exist_in_the_schema():
  table = reference_table(read(CONFIGURATION_PAGE))
  documented = re.findall(r'^\| `([^`]+)` \|', table, re.M)
  schema = [path for path, _, _ in config_lib.reference_rows()]
  assert documented, 'no keys found in docs/configuration.md'
  assert sorted(set(documented) - set(schema)) == [], (
      'keys in docs/configuration.md that the schema does not have')
  assert sorted(set(schema) - set(documented)) == [], (
      'schema keys missing from docs/configuration.md')


def test_configuration_page_is_the_generated_reference():
  assert reference_table(read(CONFIGURATION_PAGE)) == (
      config_lib.reference_markdown()), (
          'docs/configuration.md differs from `python -m wm_tf.config`: '
          'paste its output over the table')


def test_commands_are_found():
  """The extraction sees the commands (else the next test checks nothing)."""
  commands = documented_commands(doc_paths())
  modules = {module for _, module, _, _ in commands}
  assert {'launch.train', 'launch.export', 'launch.evaluate',
          'benchmarks.sample_efficiency'} <= modules, modules
  joined = [text for _, _, _, text in commands]
  # A command continued over lines with a backslash is one command.
  assert any('--seed=3 --set actor.entropy=1e-3' in t for t in joined), joined


def test_documented_commands_parse_with_their_flags():
  assert command_problems(doc_paths()) == []


def test_relative_links_point_to_files_that_exist():
  assert link_problems(doc_paths()) == []


def test_every_docs_page_is_linked_from_the_readme():
  _, prose = split_fences(read(README))
  linked = {os.path.normpath(os.path.join(REPO_ROOT, target.partition('#')[0]))
            for target in _LINK.findall(prose)}
  pages = set(glob.glob(os.path.join(DOCS_DIR, '*.md')))
  pages.discard(os.path.join(DOCS_DIR, 'README.md'))
  assert sorted(os.path.relpath(p, REPO_ROOT) for p in pages - linked) == []


def test_readme_quick_start_is_what_ci_runs():
  ci_lines = [line.strip() for line in read(
      os.path.join(REPO_ROOT, '.ci', 'run')).splitlines()]
  command = "pip install -e '.[test]' && pytest -q -n 2 tests"
  assert command in ci_lines
  blocks, _ = split_fences(read(README))
  assert any(command in body.splitlines() for _, body in blocks)


def _broken_copy(root, page, old, new):
  """`root` as a copy of the repository: README.md and docs/ copied, with
  one replacement in `page`; everything else a symlink to the original."""
  os.makedirs(root)
  for name in os.listdir(REPO_ROOT):
    source = os.path.join(REPO_ROOT, name)
    if name == 'docs':
      shutil.copytree(source, os.path.join(root, name))
    elif name == 'README.md':
      shutil.copy(source, os.path.join(root, name))
    elif name != '.git':
      os.symlink(source, os.path.join(root, name))
  path = os.path.join(root, page)
  text = read(path)
  assert old in text, (page, old)
  with open(path, 'w', encoding='utf-8') as f:
    f.write(text.replace(old, new, 1))
  return root


@pytest.mark.parametrize('page,old,new,expected', [
    ('docs/training.md', '--seed=3', '--seeds=3', 'UnrecognizedFlagError'),
    ('docs/training.md', '--set actor.entropy=1e-3',
     '--set actor.entropi=1e-3', "no config key 'actor.entropi'"),
    ('docs/training.md', '--set run.total_env_steps=20000',
     '--set run.total_env_steps=many', 'run.total_env_steps'),
    ('docs/evaluation.md', '--episodes=10 --video', '--episodes=ten --video',
     'IllegalFlagValueError'),
    ('docs/results.md', '--envs=pendulum --seeds=5',
     '--envs=pendulum --set dynamics.sdt=1 --seeds=5', "'dynamics.sdt'"),
])
def test_a_wrong_command_fails(tmp_path, page, old, new, expected):
  root = _broken_copy(str(tmp_path / 'repo'), page, old, new)
  problems = command_problems(doc_paths(root), root)
  assert len(problems) == 1 and expected in problems[0], problems


def test_a_broken_link_fails(tmp_path):
  root = _broken_copy(str(tmp_path / 'file'), 'README.md',
                      '(docs/export.md)', '(docs/exporting.md)')
  problems = link_problems(doc_paths(root))
  assert len(problems) == 1 and 'exporting.md' in problems[0], problems
  root = _broken_copy(str(tmp_path / 'anchor'), 'docs/design.md',
                      'results.md#sample-efficiency', 'results.md#samples')
  problems = link_problems(doc_paths(root))
  assert len(problems) == 1 and '#samples' in problems[0], problems


# A short run of the default config: small models, no XLA, 300 env steps.
SHORT_RUN = (
    'run.total_env_steps=300', 'run.prefill_steps=100', 'warmup.steps=150',
    'run.eval_every=150', 'run.eval_episodes=2', 'run.checkpoint_seconds=1',
    'run.histogram_every=0', 'run.image_every=0', 'encoder.units=32',
    'representation_learner.units=32', 'dynamics.units=32',
    'heads.reward.units=32', 'heads.continue.units=32',
    'heads.decoder.units=32', 'actor.units=32', 'critic.units=32',
    'replay.batch_size=4', 'replay.sequence_length=8', 'run.jit=false')


def quick_start_commands():
  """The README quick start's `python -m launch.*` commands, in order."""
  text = read(README)
  section = text[text.index('## Quick start'):text.index('## Results')]
  blocks, _ = split_fences(section)
  commands = []
  for language, body in blocks:
    if language in SHELL_LANGUAGES:
      for tokens in shell_commands(body):
        parsed = python_module_command(tokens)
        if parsed and parsed[0].startswith('launch.'):
          commands.append(tokens[tokens.index('-m') - 1:])
  return commands


def test_readme_quick_start_runs_as_written(tmp_path):
  """Train, rerun (resume), evaluate and export as the README writes them,
  from a working directory outside the repository, so the default --logdir
  and --config are relative; the train commands get a short budget added."""
  commands = quick_start_commands()
  modules = [c[2] for c in commands]
  assert modules == ['launch.train', 'launch.train', 'launch.evaluate',
                     'launch.export'], commands
  work = tmp_path / 'work'
  work.mkdir()
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
  outputs = []
  for tokens in commands:
    argv = [sys.executable] + tokens[1:]
    if tokens[2] == 'launch.train':
      argv += [f'--set={o}' for o in SHORT_RUN] + ['--noprogress']
    result = subprocess.run(argv, cwd=work, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, (tokens, result.stdout[-2000:],
                                    result.stderr[-3000:])
    outputs.append(result.stdout)
  first, rerun, evaluated, exported = outputs
  assert 'done: 300 env steps' in first
  assert re.search(r'last eval return -?\d', first)
  assert 'resumed from ' in rerun and 'done: 300 env steps' in rerun
  assert re.search(r'last eval return -?\d', rerun)  # not nan
  assert 'mean' in evaluated
  assert (work / 'models' / 'cartpole' / '1' / 'saved_model.pb').exists()
  assert 'exported' in exported
