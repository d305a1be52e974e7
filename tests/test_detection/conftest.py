import pytest
import torch


def pytest_configure(config):
    config.addinivalue_line(
        'markers', 'heavy: slow CPU test (full-size detector inference or multi-process '
        'training); runs by default, skip with -m "not heavy"')


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread: on a busy 2-core machine two threads wait on each other
    (a mini DAT step took 36x longer); subprocesses get OMP_NUM_THREADS=1 likewise."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
