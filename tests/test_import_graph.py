"""The modules of dat/ import each other without a circle (imports inside functions count),
and importing dat changes no warning filter."""
import ast
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Set

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / 'dat'


def module_names() -> Dict[str, Path]:
    """dat's modules by dotted name (a package by its __init__.py)."""
    names = {}
    for path in PACKAGE.rglob('*.py'):
        parts = path.relative_to(PACKAGE.parent).with_suffix('').parts
        names['.'.join(parts[:-1] if parts[-1] == '__init__' else parts)] = path
    return names


def imported(name: str, path: Path, modules: Set[str]) -> Set[str]:
    """The dat modules that module ``name`` (at ``path``) imports, anywhere in its code. ``from
    P import x`` imports P.x when that is a module, else P."""
    package = name if path.name == '__init__.py' else name.rpartition('.')[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                anchor = package.split('.')[:len(package.split('.')) - node.level + 1]
                base = '.'.join(anchor + ([base] if base else []))
            targets = [f'{base}.{alias.name}' if f'{base}.{alias.name}' in modules else base
                       for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in modules and t != name)
    return found


def find_cycle(graph: Dict[str, Set[str]]) -> List[str]:
    """One circle of ``graph`` as [a, b, ..., a], or [] if there is none."""
    state: Dict[str, int] = {}  # 1: on the current path, 2: done
    path: List[str] = []

    def visit(node: str) -> List[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        state[node] = 2
        path.pop()
        return []

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return []


def test_the_checker_finds_a_circle():
    assert find_cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': set()}) == ['a', 'b', 'c', 'a']
    assert find_cycle({'a': {'b'}, 'b': set()}) == []


def test_dat_has_no_import_circle():
    modules = module_names()
    graph = {name: imported(name, path, set(modules)) for name, path in modules.items()}
    # the checker sees relative, absolute and function-level imports
    assert 'dat.models.checkpoint' in graph['dat.models.backbones.dat']
    assert 'dat.families' in graph['dat.timm_models']
    assert find_cycle(graph) == []


@pytest.mark.slow
def test_importing_dat_adds_no_warning_filter():
    """Once torch, timm and mmengine are imported (they set filters of their own), importing
    dat and its adapters leaves ``warnings.filters`` as it was."""
    code = '''
import warnings
import mmdet.registry, mmengine.model, mmengine.runner, mmpretrain.apis, mmseg.registry
import timm, torch
from mmseg.evaluation.metrics import IoUMetric
before = list(warnings.filters)
import dat, dat.adapters.mmdet, dat.adapters.mmpretrain, dat.adapters.mmseg, dat.families
added = [f for f in warnings.filters if f not in before]
assert warnings.filters == before, added
print('unchanged')
'''
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ['unchanged']
