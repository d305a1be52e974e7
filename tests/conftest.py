import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO.parent / 'shared' / 'reference'


@pytest.fixture(scope='session')
def reference_dir() -> Path:
    """../shared/reference beside the checkout (the golden 2022 data)."""
    if not REFERENCE.is_dir():
        pytest.skip(f'reference data not found at {REFERENCE}')
    return REFERENCE


@pytest.fixture(scope='session')
def repo_root() -> Path:
    return REPO


def pytest_configure(config):
    # Keep run outputs of tools out of the checkout's work_dirs when tests run in parallel.
    os.environ.setdefault('PYTHONHASHSEED', '0')
