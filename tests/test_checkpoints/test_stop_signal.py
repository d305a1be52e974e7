"""SIGTERM during an epoch of tools/train.py (one process, and two with gloo through
tools/dist_train.sh, which forwards it): the run finishes the iteration it is in, saves
``iter_N.pth`` (N: the iterations done, so nothing trained is lost), exits with 75, and
``--resume`` continues inside the epoch, to final weights bitwise those of a run that was
never stopped (see test_kill_resume.py for why bitwise holds).

The iterations are slowed down (a hook that sleeps) so that the signal lands mid-epoch.
"""
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
from ckpt_helpers import REPO, dedent, run
from fault_helpers import ITERS_PER_EPOCH, toy_runner
from mini_configs import TINY_TRAIN_CONFIG
from mmengine.hooks import Hook

from dat.engine import StopSignalHook, TrainingStopped, preemption
from dat.models.checkpoint import read_checkpoint

SLOW_HOOK = '''
import time

from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class SlowIterHook(Hook):
    """Training iterations of at least 0.3 s, so that a signal can land in an epoch."""

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        time.sleep(0.3)
'''

# TINY_TRAIN_CONFIG (24 images, batch 4: 6 iterations per epoch, 3 with 2 processes),
# 2 epochs, shuffled by the seeded sampler, a checkpoint per epoch.
CONFIG = '''
_base_ = ['./tiny.py']
custom_imports = dict(imports=['dat.adapters.mmpretrain', 'slow_hook'],
                      allow_failed_imports=False)
custom_hooks = [dict(type='SlowIterHook')]
train_dataloader = dict(sampler=dict(type='DefaultSampler', shuffle=True))
train_cfg = dict(max_epochs=2, val_interval=1)
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=-1))
randomness = dict(seed=0, deterministic=True)
'''
EPOCHS = 2


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


ITERS = {1: 6, 2: 3}  # iterations per epoch, by number of processes


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp('stop')
    data = root / 'data'
    result = run([sys.executable, 'tools/dataset_converters/make_shapes_dataset.py', data,
                  '--train', '4', '--val', '1', '--size', '32'])
    assert result.returncode == 0, result.stderr
    (root / 'slow_hook.py').write_text(dedent(SLOW_HOOK))
    (root / 'tiny.py').write_text(TINY_TRAIN_CONFIG.format(repo=REPO, data=data))
    (root / 'stop.py').write_text(dedent(CONFIG))
    return root


def command(root, procs, work_dir, *extra):
    if procs == 1:
        cmd = [sys.executable, 'tools/train.py']
    else:
        cmd = ['bash', 'tools/dist_train.sh']
    cmd += [str(root / 'stop.py')] + (['2'] if procs == 2 else [])
    return cmd + ['--work-dir', str(work_dir), '--no-validate', *extra]


def environment(root):
    return {**os.environ, 'PYTHONPATH': f'{REPO}{os.pathsep}{root}', 'OMP_NUM_THREADS': '1',
            'PORT': str(free_port())}


def train_steps(log):
    """(epoch, batch) of each logged training iteration."""
    return [tuple(map(int, m)) for m in re.findall(r'Epoch\(train\) \[(\d+)\]\[\s*(\d+)/', log)]


def stopped_run(root, procs, work_dir, at_batch=2):
    """Start the run, send SIGTERM (to the launcher) once batch ``at_batch`` of epoch 2 is
    logged; the exit status, the log, the iteration logged when the signal was sent."""
    log_file = root / f'{work_dir.name}.log'
    with open(log_file, 'w') as log:
        proc = subprocess.Popen(command(root, procs, work_dir), cwd=REPO, env=environment(root),
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 300
    try:
        while (2, at_batch) not in train_steps(log_file.read_text()):
            assert proc.poll() is None, log_file.read_text()[-3000:]
            assert time.time() < deadline, 'no progress'
            time.sleep(0.05)
        seen = train_steps(log_file.read_text())[-1]
        proc.send_signal(signal.SIGTERM)
        returncode = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    return returncode, log_file.read_text(), seen


def final_weights(work_dir):
    return read_checkpoint(work_dir / f'epoch_{EPOCHS}.pth')


@pytest.mark.slow
@pytest.mark.parametrize('procs', [1, 2])
def test_sigterm_mid_epoch_saves_and_resumes_exactly(setup, procs):
    per_epoch = ITERS[procs]
    reference = setup / f'reference{procs}'
    result = subprocess.run(command(setup, procs, reference), cwd=REPO, env=environment(setup),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    work_dir = setup / f'stopped{procs}'
    # signalled at the first batch of epoch 2 with 3 batches per epoch, else the second
    returncode, log, (epoch, batch) = stopped_run(setup, procs, work_dir,
                                                  at_batch=1 if per_epoch < 5 else 2)
    assert returncode == 75, log[-3000:]
    assert 'Traceback' not in log, log[-3000:]
    # the iteration checkpoint of the stop: the last iteration trained is in it (nothing is
    # lost), at most the one that was running when the signal came after the one logged
    done = train_steps(log)[-1]
    step = (done[0] - 1) * per_epoch + done[1]
    seen = (epoch - 1) * per_epoch + batch
    assert seen <= step <= seen + 1, (seen, step)
    assert done[0] == 2 and done[1] < per_epoch, 'the signal did not land mid-epoch'
    stopped = [line for line in log.splitlines() if line.startswith('stopped: ')]
    assert stopped == [f'stopped: SIGTERM at iteration {step} (epoch 2, batch {done[1]}/'
                       f'{per_epoch}): saved {work_dir}/iter_{step}.pth; tools/train.py ... '
                       '--resume continues from it (tools/slurm_train.sh requeues and resumes '
                       'by itself)']
    assert (work_dir / 'last_checkpoint').read_text().strip() == f'{work_dir}/iter_{step}.pth'
    assert (work_dir / 'stopped_by').read_text() == 'SIGTERM'  # what slurm_train.sh reads
    checkpoint = read_checkpoint(work_dir / f'iter_{step}.pth')
    assert checkpoint['meta']['iter'] == step and checkpoint['meta']['epoch'] == 1
    assert {'optimizer', 'param_schedulers', 'message_hub'} <= checkpoint.keys()
    assert not list(work_dir.glob('*.tmp'))

    result = subprocess.run(command(setup, procs, work_dir, '--resume'), cwd=REPO,
                            env=environment(setup), capture_output=True, text=True, timeout=600)
    resumed = result.stdout + result.stderr
    assert result.returncode == 0, resumed[-3000:]
    assert f'resumed epoch: 1, iter: {step}' in resumed
    # the resumed run trains the rest of epoch 2 only, with the batches of that epoch's order
    assert train_steps(resumed) == [(2, b) for b in range(done[1] + 1, per_epoch + 1)]

    final, expected = final_weights(work_dir), final_weights(reference)
    assert final['meta']['iter'] == expected['meta']['iter'] == EPOCHS * per_epoch
    assert final['state_dict'].keys() == expected['state_dict'].keys()
    for key, value in expected['state_dict'].items():
        assert torch.equal(final['state_dict'][key], value), key  # bitwise
    for key, value in expected['optimizer']['state'].items():
        for name, tensor in value.items():
            assert torch.equal(final['optimizer']['state'][key][name], tensor)


class StopAt(Hook):
    """What a stop signal does to the flag, after training iteration ``iteration``."""

    priority = 'VERY_HIGH'

    def __init__(self, iteration):
        self.iteration = iteration

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.iteration:
            preemption._Stop.signal = 'SIGUSR1'


# the toy run (fault_helpers): 3 epochs of 4 iterations, shuffled, lr steps after epochs 1, 2
TOY = dict(max_epochs=3, max_keep_ckpts=-1, shuffle=True,
           param_scheduler=dict(type='MultiStepLR', milestones=[1, 2], by_epoch=True))


@pytest.mark.usefixtures('mmengine_patched')  # resume as tools/train.py does
@pytest.mark.parametrize('stop_iter', [2, ITERS_PER_EPOCH, ITERS_PER_EPOCH + 3])
def test_stop_hook_in_process_resumes_exactly(tmp_path, monkeypatch, stop_iter):
    """The stop hook alone (in-process, no signal: the flag is set by a hook): mid-epoch, at
    the last batch of an epoch (the stop waits for the epoch's end: its lr step and its
    checkpoint) and in the last epoch, the resumed run ends with the weights, optimizer
    state and lr of a run that was never stopped."""
    monkeypatch.setattr(preemption._Stop, 'installed', True)  # the test's handlers stay
    monkeypatch.setattr(preemption._Stop, 'signal', None)
    torch.manual_seed(0)  # the toy model is built before the runner seeds
    reference = toy_runner(tmp_path / 'reference', hooks=[StopSignalHook()], **TOY)
    reference.train()

    work_dir = tmp_path / 'stopped'
    torch.manual_seed(0)
    stopped = toy_runner(work_dir, hooks=[StopSignalHook(), StopAt(stop_iter)], **TOY)
    with pytest.raises(TrainingStopped) as err:
        stopped.train()
    if stop_iter == ITERS_PER_EPOCH:  # the epoch's checkpoint is the stop's
        checkpoint = work_dir / 'epoch_1.pth'
        assert str(err.value) == (
            f'SIGUSR1 at the end of epoch 1 (iteration 4): {checkpoint} was just saved; '
            'tools/train.py ... --resume continues from it (tools/slurm_train.sh requeues '
            'and resumes by itself)')
    else:
        checkpoint = work_dir / f'iter_{stop_iter}.pth'
        epoch, batch = divmod(stop_iter, ITERS_PER_EPOCH)
        assert str(err.value).startswith(
            f'SIGUSR1 at iteration {stop_iter} (epoch {epoch + 1}, batch {batch}/'
            f'{ITERS_PER_EPOCH}): saved {checkpoint};')
    assert (work_dir / 'last_checkpoint').read_text() == str(checkpoint)
    assert (work_dir / 'stopped_by').read_text() == 'SIGUSR1'
    assert read_checkpoint(checkpoint)['meta']['iter'] == stop_iter

    preemption._Stop.signal = None
    resumed = toy_runner(work_dir, resume_from=str(checkpoint), hooks=[StopSignalHook()], **TOY)
    resumed.train()
    assert resumed.iter == reference.iter == 3 * ITERS_PER_EPOCH
    for key, value in reference.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key  # bitwise
    expected = reference.optim_wrapper.state_dict()
    final = resumed.optim_wrapper.state_dict()
    assert final['param_groups'][0]['lr'] == expected['param_groups'][0]['lr']
    for key, value in expected['state'].items():
        assert torch.equal(final['state'][key]['momentum_buffer'], value['momentum_buffer'])
