"""README.md is the front door: its commands are the ones CI and the tools run, and every
link of it and of docs/ leads somewhere."""
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = (REPO / 'README.md').read_text()
LINK = re.compile(r'\]\(([^)#\s]+)(?:#[^)]*)?\)')


def test_the_test_commands_are_those_of_ci():
    ci = (REPO / '.ci' / 'run').read_text()
    (command, ) = [line for line in ci.splitlines()
                   if 'python3 -m pytest' in line and not line.startswith('#')]
    assert command.strip() in README, f'README.md must state the CI test command: {command}'
    assert 'python3 -m pytest -m "not slow" tests' in README
    assert re.search(r'(?m)^markers =\n(\s+.*\n)*\s+slow:', (REPO / 'setup.cfg').read_text())


def test_quick_start_command():
    assert 'bash tools/install.sh && bash tools/quickstart.sh' in README
    assert (REPO / 'tools' / 'quickstart.sh').is_file()


def test_no_figures_that_change_with_every_run():
    """Timings belong in docs/ (with their command), not on the front door."""
    assert not re.findall(r'\b\d+(?:\.\d+)? ?(?:s|sec|seconds|min|minutes)\b', README)


@pytest.mark.parametrize('doc', ['README.md'] + sorted(
    str(p.relative_to(REPO)) for p in (REPO / 'docs').glob('*.md')))
def test_relative_links_resolve(doc):
    path = REPO / doc
    missing = [target for target in LINK.findall(path.read_text())
               if '://' not in target and not target.startswith('mailto:')
               and not (path.parent / target).exists()]
    assert not missing, f'{doc}: links to missing files: {missing}'
