"""The wheel: its Requires-Dist brings what ``import dat.models`` imports, and it carries the
configs and the model index (``dat/.mim``)."""
import ast
import importlib.metadata as metadata
import json
import re
import shutil
import subprocess
import sys
import zipfile

import pytest

#: What the wheel is built from (setup.py copies configs, tools and model-index.yml into
#: dat/.mim); copied so that the build leaves nothing in the checkout.
SOURCES = ('setup.py', 'setup.cfg', 'MANIFEST.in', 'model-index.yml', 'dat', 'configs',
           'tools', 'requirements', 'requirements.txt', 'README.md')

#: Run in a fresh interpreter: the modules that ``import dat.models`` loads, and the
#: top-level modules that dat's own loaded files import by name.
IMPORT_TRACE = r'''
import ast, json, sys
import dat.models
loaded = sorted({name.split('.')[0] for name in sys.modules})
direct = set()
for name, module in list(sys.modules.items()):
    if name.split('.')[0] == 'dat' and getattr(module, '__file__', None):
        for node in ast.walk(ast.parse(open(module.__file__).read())):
            if isinstance(node, ast.Import):
                direct.update(alias.name.split('.')[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                direct.add(node.module.split('.')[0])
print(json.dumps({'loaded': loaded, 'direct': sorted(direct)}))
'''


def third_party(modules):
    """{module: distributions} of the modules that are neither stdlib nor dat."""
    owners = metadata.packages_distributions()
    return {m: owners.get(m, []) for m in modules
            if m not in sys.stdlib_module_names and m != 'dat' and not m.startswith('_')
            and m in owners}


def normalise(name: str) -> str:
    return re.sub(r'[-_.]+', '-', name).lower()


def requirement_names(requires, extras: bool = False):
    """Names of the requirements (those behind an extra only with ``extras``)."""
    return {normalise(re.match(r'[A-Za-z0-9_.-]+', r).group())
            for r in requires or [] if extras or 'extra ==' not in r}


def closure(names):
    """``names`` and, through the installed metadata, everything they require, extras
    included (libraries import some optional packages when they are installed, e.g. anyio
    imports trio, its ``trio`` extra)."""
    seen, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            todo.extend(requirement_names(metadata.requires(name), extras=True))
        except metadata.PackageNotFoundError:
            pass
    return seen


@pytest.fixture(scope='module')
def wheel(tmp_path_factory, repo_root):
    src = tmp_path_factory.mktemp('src')
    for name in SOURCES:
        path = repo_root / name
        if path.is_dir():
            shutil.copytree(path, src / name,
                            ignore=shutil.ignore_patterns('__pycache__', '*.pyc', '.mim'))
        else:
            shutil.copyfile(path, src / name)
    out = tmp_path_factory.mktemp('wheel')
    result = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps',
                             '--no-build-isolation', '-q', '-w', str(out), str(src)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    wheels = list(out.glob('dat-*.whl'))
    assert len(wheels) == 1
    return zipfile.ZipFile(wheels[0])


@pytest.fixture(scope='module')
def requires_dist(wheel):
    name = next(n for n in wheel.namelist() if n.endswith('.dist-info/METADATA'))
    text = wheel.read(name).decode()
    return requirement_names(re.findall(r'^Requires-Dist: (.*)$', text, re.M))


@pytest.fixture(scope='module')
def imports(repo_root):
    result = subprocess.run([sys.executable, '-c', IMPORT_TRACE], capture_output=True,
                            text=True, cwd=repo_root, timeout=300,
                            env={**__import__('os').environ, 'PYTHONPATH': str(repo_root)})
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_requires_dist_names_what_dat_models_imports(requires_dist, imports):
    """Every third-party module that dat's own code imports is a direct requirement; every
    one that ``import dat.models`` loads comes with the requirements (or theirs)."""
    direct = third_party(imports['direct'])
    assert {'torch', 'timm', 'einops', 'mmengine', 'numpy'} <= set(direct)
    missing = {m: d for m, d in direct.items()
               if not {normalise(x) for x in d} & requires_dist}
    assert not missing, f'imported by dat but not in install_requires: {missing}'
    brought = closure(requires_dist)
    loaded = third_party(imports['loaded'])
    missing = {m: d for m, d in loaded.items() if not {normalise(x) for x in d} & brought}
    assert not missing, f'loaded by import dat.models, not brought by install_requires: ' \
                        f'{missing}'


@pytest.mark.slow
def test_requirements_files_agree_with_install_requires(requires_dist, repo_root):
    """requirements/*.txt (what tools/install.sh installs) name every install_requires."""
    listed = set()
    for path in (repo_root / 'requirements').glob('*.txt'):
        listed |= requirement_names(line.strip() for line in path.read_text().splitlines()
                                    if line.strip() and not line.startswith(('#', '-')))
    assert requires_dist <= listed


@pytest.mark.slow
def test_wheel_carries_configs_and_model_index(wheel, repo_root):
    names = set(wheel.namelist())
    assert 'dat/.mim/model-index.yml' in names
    for metafile in re.findall(r'^\s*-\s*(\S+\.yml)', (repo_root / 'model-index.yml')
                               .read_text(), re.M):
        assert f'dat/.mim/{metafile}' in names
    configs = {str(p.relative_to(repo_root)) for p in (repo_root / 'configs').rglob('*.py')}
    assert configs and {f'dat/.mim/{c}' for c in configs} <= names
    assert 'dat/models/backbones/dat.py' in names
    assert not any(n.startswith('tests/') for n in names)
    assert ast.parse(wheel.read('dat/.mim/configs/dat/dat-tiny_8xb128-amp_in1k.py'))
