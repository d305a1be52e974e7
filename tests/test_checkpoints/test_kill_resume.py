"""Kill -9 during 2-process CPU training (tools/dist_train.sh, gloo), at seeded moments,
some of them inside checkpoint writes: at every moment the work dir holds complete
checkpoints only, every ``--resume`` starts from the checkpoint that ``last_checkpoint``
names, and the final weights are bitwise those of an uninterrupted run.

Why bitwise: the run is deterministic (``randomness=dict(seed=0, deterministic=True)``, no
random augmentation, no stochastic depth, a seeded sampler whose order the resumed
IterBasedTrainLoop replays by skipping the batches already trained) and a resume restores
the weights, AdamW's moments, the scheduler and the iteration exactly. With 2 processes the
all-reduce adds two numbers, which is commutative, so the gradient sums are the same
whatever the bucket order. Nothing is left to round differently, so nothing is compared
with a tolerance.
"""
import os
import random
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import torch
from ckpt_helpers import REPO, dedent, tiny_training_dir

from dat.models.checkpoint import read_checkpoint

MAX_ITERS = 20  # more than the kills can get through: each run is killed before the end
WRITE_SECONDS = 0.5  # how long a slowed checkpoint write takes
KILLS = ['write', 'train', 'write', 'start', 'train', 'write', 'write']

SLOW_BACKEND = f'''
"""mmengine's local file backend, with writes slowed down so that kills land inside the
checkpoint writes of AtomicCheckpointHook (into NAME.tmp, renamed when complete)."""
import time

from mmengine.fileio import LocalBackend, register_backend


class SlowLocalBackend(LocalBackend):

    def put(self, obj, filepath):
        step = -(-len(obj) // 10)
        with open(filepath, 'wb') as file:
            for start in range(0, len(obj), step):
                file.write(obj[start:start + step])
                file.flush()
                time.sleep({WRITE_SECONDS} / 10)


register_backend('slow_local', SlowLocalBackend, force=True)
'''

# TINY_TRAIN_CONFIG, iteration-based, a checkpoint after every iteration, written slowly.
CONFIG = '''
_base_ = ['./tiny.py']
custom_imports = dict(imports=['dat.adapters.mmpretrain', 'slow_backend'],
                      allow_failed_imports=False)
train_dataloader = dict(sampler=dict(type='DefaultSampler', shuffle=True))
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters={max_iters})
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=4),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=False, begin=4, end={max_iters}),
]
default_hooks = dict(
    checkpoint=dict(interval=1, by_epoch=False, max_keep_ckpts=3,
                    backend_args=dict(backend='slow_local')))
randomness = dict(seed=0, deterministic=True)
'''


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def children(pid):
    """Direct children of ``pid``, from /proc."""
    found = []
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                stat = Path(f'/proc/{entry}/stat').read_text()
            except OSError:
                continue
            if int(stat.rsplit(')', 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def process_tree(pid):
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += children(current)
    return tree


def kill_tree(proc):
    """SIGKILL the launcher and everything it started (torchrun puts each worker in a
    session of its own, so one process group is not all of them)."""
    for pid in process_tree(proc.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


class Trainer:
    """Starts tools/dist_train.sh --resume with 2 CPU processes in its own session."""

    def __init__(self, root, work_dir):
        self.root, self.work_dir, self.count = root, work_dir, 0

    def start(self):
        self.count += 1
        self.log = self.root / f'{self.work_dir.name}_run{self.count}.log'
        env = {**os.environ, 'PORT': str(free_port()), 'OMP_NUM_THREADS': '1',
               'PYTHONPATH': f'{REPO}{os.pathsep}{self.root}'}
        self.started = time.time()
        with open(self.log, 'w') as log:
            self.proc = subprocess.Popen(
                ['bash', 'tools/dist_train.sh', str(self.root / 'kill.py'), '2',
                 '--work-dir', str(self.work_dir), '--no-validate', '--resume'],
                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        return self

    def output(self):
        return self.log.read_text()


def steps(work_dir):
    return sorted(int(p.stem.split('_')[1]) for p in work_dir.glob('iter_*.pth'))


def named_step(work_dir):
    last = work_dir / 'last_checkpoint'
    return int(Path(last.read_text().strip()).stem.split('_')[1]) if last.exists() else None


def wait_for(condition, proc, timeout=300):
    """Poll until ``condition()`` or the process exits; True if the condition held."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.02)
    raise AssertionError('training made no progress')


def assert_consistent(work_dir):
    """What a kill may leave: complete checkpoints only, and last_checkpoint names one."""
    for step in steps(work_dir):
        checkpoint = read_checkpoint(work_dir / f'iter_{step}.pth', mmap=True)
        assert checkpoint['meta']['iter'] == step
    named = named_step(work_dir)
    if named is not None:
        assert named in steps(work_dir)


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    root = tiny_training_dir(tmp_path_factory.mktemp('kill'))
    (root / 'slow_backend.py').write_text(SLOW_BACKEND)
    (root / 'kill.py').write_text(dedent(CONFIG).format(max_iters=MAX_ITERS))
    return root


@pytest.fixture(scope='module')
def reference(setup):
    """The uninterrupted run."""
    trainer = Trainer(setup, setup / 'reference').start()
    assert trainer.proc.wait(timeout=600) == 0, trainer.output()[-3000:]
    return read_checkpoint(setup / 'reference' / f'iter_{MAX_ITERS}.pth')


@pytest.fixture(scope='module')
def killed(setup):
    """The same training, killed at the moments of KILLS, resumed after each."""
    rng = random.Random(0)
    work_dir = setup / 'killed'
    trainer = Trainer(setup, work_dir)
    history = []  # (kind, step named by last_checkpoint at the start, killed inside a write)
    for kind in KILLS:
        start_step = named_step(work_dir)
        trainer.start()
        if kind == 'write':  # while the first checkpoint of this run is being written
            hit = wait_for(lambda: any(p.stat().st_mtime >= trainer.started
                                       for p in work_dir.glob('*.pth.tmp')), trainer.proc)
            time.sleep(rng.uniform(0.1, 0.8) * WRITE_SECONDS)
        elif kind == 'train':  # training: after a new checkpoint, at a random moment
            hit = wait_for(lambda: named_step(work_dir) not in (None, start_step),
                           trainer.proc)
            time.sleep(rng.uniform(0.0, 1.0))
        else:  # start-up: imports, process group, resume
            hit = True
            time.sleep(rng.uniform(1.0, 4.0))
        assert hit and trainer.proc.poll() is None, f'{kind}: the run ended before the kill'
        kill_tree(trainer.proc)
        inside_write = any(work_dir.glob('*.pth.tmp'))
        history.append((kind, start_step, inside_write, trainer.output()))
        assert_consistent(work_dir)
    # Damage the latest checkpoint: the last run warns and resumes from the one before.
    named = named_step(work_dir)
    latest = work_dir / f'iter_{named}.pth'
    data = latest.read_bytes()
    latest.write_bytes(data[:len(data) // 3])
    start_step = max(step for step in steps(work_dir) if step != named)
    trainer.start()
    assert trainer.proc.wait(timeout=600) == 0, trainer.output()[-3000:]
    history.append(('final', start_step, False, trainer.output()))
    return work_dir, history, (latest, len(data) // 3)


@pytest.mark.slow
def test_kills_cost_nothing(reference, killed):
    work_dir, history, _ = killed
    # kills inside checkpoint writes happened (an interrupted temporary file was left)
    assert sum(inside for kind, _, inside, _ in history if kind == 'write') >= 3
    # every run that got as far as resuming resumed from the checkpoint last_checkpoint
    # named (the last one: from the one before, see the next test)
    resumed = 0
    for kind, start_step, _, output in history:
        assert 'Traceback' not in output, output[-3000:]
        if 'resumed epoch' in output:
            assert re.search(rf'resumed epoch: \d+, iter: {start_step}\n', output), output
            resumed += 1
        else:  # nothing to resume from yet, or killed during start-up
            assert start_step is None or kind == 'start', output[-3000:]
    assert resumed >= len(KILLS) - 2  # all but the first run and the start-up kill
    assert not list(work_dir.glob('*.tmp'))  # interrupted writes were cleaned up
    assert steps(work_dir) == [MAX_ITERS - 2, MAX_ITERS - 1, MAX_ITERS]  # max_keep_ckpts=3

    final = read_checkpoint(work_dir / f'iter_{MAX_ITERS}.pth')
    assert final['meta']['iter'] == MAX_ITERS
    assert final['state_dict'].keys() == reference['state_dict'].keys()
    for key, value in reference['state_dict'].items():
        assert torch.equal(final['state_dict'][key], value), key  # bitwise
    for key, value in reference['optimizer']['state'].items():
        for name, tensor in value.items():
            assert torch.equal(final['optimizer']['state'][key][name], tensor)


@pytest.mark.slow
def test_truncated_latest_checkpoint_resumes_from_the_previous_one(killed):
    work_dir, history, (latest, size) = killed
    kind, start_step, _, output = history[-1]
    warning = [line for line in output.splitlines() if line.startswith('warning: ')]
    assert warning == [f'warning: cannot resume from {latest}: cannot be read as a checkpoint: '
                       f'it is truncated or damaged ({size} bytes, and its zip archive has no '
                       'end: an interrupted write or copy?); trying the next newest checkpoint']
    assert f'resuming from {work_dir}/iter_{start_step}.pth' in output
    assert re.search(rf'resumed epoch: \d+, iter: {start_step}\n', output)
    assert_consistent(work_dir)  # the damaged file was written again (and rotated out)
