"""The faults of docs/faults.md as a user meets them: tools/train.py on the quick-start
config (scaled down: TINY_TRAIN_CONFIG) with a full disk (a real tmpfs, where the test may
mount one), a diverged loss (lr 1e12 from the second epoch, max_keep_ckpts=1 as in the
issue) and a broken image. Each checks the one-line message, the files left, and that
``--resume`` then continues. The in-process versions: test_fault_tolerance.py."""
import math
import os
import re
import subprocess
import sys

import pytest
from ckpt_helpers import REPO, dedent, run, tiny_training_dir

from dat.models.checkpoint import read_checkpoint

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    """The shapes dataset (4 images per class) and the tiny quick-start config."""
    root = tiny_training_dir(tmp_path_factory.mktemp('faults'))
    return root, root / 'data'


def train(config, work_dir, *args):
    return run([sys.executable, 'tools/train.py', config, '--work-dir', work_dir,
                '--no-validate', *args],
               env={'OMP_NUM_THREADS': '1', 'PYTHONPATH': os.pathsep.join(
                   p for p in (str(REPO), os.environ.get('PYTHONPATH')) if p)})


def error_line(result):
    lines = result.stderr.strip().splitlines()
    return lines[-1] if lines else ''


def listing(work_dir):
    return sorted(n for n in os.listdir(work_dir) if n.endswith(('.pth', '.tmp'))
                  or n == 'last_checkpoint')


def finite(path):
    return all(bool(t.isfinite().all()) for t in read_checkpoint(path)['state_dict'].values()
               if t.is_floating_point())


@pytest.fixture
def tmpfs(tmp_path):
    """A tmpfs mounted at tmp_path/disk (root only); yields a function that resizes it."""
    mount = tmp_path / 'disk'
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(
            ['mount', '-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', str(mount)],
            capture_output=True).returncode != 0:
        pytest.skip('cannot mount a tmpfs here (needs root)')

    def resize(size_bytes):
        subprocess.run(['mount', '-o', f'remount,size={size_bytes}', str(mount)], check=True)

    try:
        yield mount, resize
    finally:
        subprocess.run(['umount', '-l', str(mount)], check=False)


def test_disk_full_during_save_then_resume_after_freeing_space(shapes, tmp_path, tmpfs):
    root, _ = shapes
    # the size of one checkpoint and of everything else a run writes, on a normal disk
    probe = tmp_path / 'probe'
    assert train(root / 'tiny.py', probe).returncode == 0
    checkpoint = (probe / 'epoch_1.pth').stat().st_size
    mount, resize = tmpfs
    resize(int(1.6 * checkpoint) + 256 * 1024)  # room for epoch_1.pth, not for epoch_2.pth
    work_dir = mount / 'run'
    two_epochs = ['--cfg-options', 'train_cfg.max_epochs=2']
    failed = train(root / 'tiny.py', work_dir, *two_epochs)
    assert failed.returncode == 1, failed.stderr[-3000:]
    assert error_line(failed) == (
        f'error: cannot save checkpoint epoch_2.pth in {work_dir}: No space left on device '
        f'(errno 28); the partial file was removed; the last good checkpoint is '
        f'{work_dir}/epoch_1.pth; free space (or fix the cause), then continue with '
        f'tools/train.py ... --resume')
    assert 'Traceback' not in failed.stderr
    assert listing(work_dir) == ['epoch_1.pth', 'last_checkpoint']
    assert (work_dir / 'last_checkpoint').read_text() == f'{work_dir}/epoch_1.pth'
    assert read_checkpoint(work_dir / 'epoch_1.pth')['meta']['epoch'] == 1

    # without freeing space, a resume starts (nothing left blocks it) and fails the same way
    again = train(root / 'tiny.py', work_dir, '--resume', *two_epochs)
    assert again.returncode == 1 and error_line(again) == error_line(failed)
    assert listing(work_dir) == ['epoch_1.pth', 'last_checkpoint']

    resize(4 * checkpoint + 1024 * 1024)  # space freed
    resumed = train(root / 'tiny.py', work_dir, '--resume', *two_epochs)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert 'resumed epoch: 1' in resumed.stdout + resumed.stderr
    assert listing(work_dir) == ['epoch_1.pth', 'epoch_2.pth', 'last_checkpoint']
    assert read_checkpoint(work_dir / 'epoch_2.pth')['meta']['epoch'] == 2


def test_diverged_loss_stops_keeps_epoch_1_and_resume_continues(shapes, tmp_path):
    root, data = shapes
    iters = math.ceil(len((data / 'meta' / 'train.txt').read_text().splitlines()) / 4)
    # the quick start's lr (1e-3) times 1e15 from the second epoch: lr 1e12
    (root / 'diverge.py').write_text(dedent(f'''
        _base_ = ['./tiny.py']
        param_scheduler = [dict(type='MultiStepLR', by_epoch=False, milestones=[{iters + 1}],
                                gamma=1e15)]
        train_cfg = dict(max_epochs=2)
        default_hooks = dict(checkpoint=dict(max_keep_ckpts=1))
        '''))
    work_dir = tmp_path / 'run'
    failed = train(root / 'diverge.py', work_dir)
    assert failed.returncode == 1, failed.stderr[-3000:]
    line = error_line(failed)
    assert re.fullmatch(
        rf'error: non-finite loss (nan|inf)(, gradient norm (nan|inf))? at iteration '
        rf'(\d+) \(epoch 2\): the training diverged; the step was not applied; the last '
        rf'good checkpoint is {work_dir}/epoch_1.pth; lower the lr \(or enable clip_grad\), '
        rf'or skip such steps with --cfg-options default_hooks.nonfinite.max_skips=N',
        line), line
    assert int(re.search(r'iteration (\d+)', line).group(1)) > iters
    assert listing(work_dir) == ['epoch_1.pth', 'last_checkpoint']
    assert finite(work_dir / 'epoch_1.pth')

    # resumed without the lr jump: epoch 2 trains and is saved, epoch_1.pth is rotated out
    resumed = train(root / 'diverge.py', work_dir, '--resume', '--cfg-options',
                    'param_scheduler=[]')
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert listing(work_dir) == ['epoch_2.pth', 'last_checkpoint']
    assert finite(work_dir / 'epoch_2.pth')


def test_broken_image_names_the_file_or_is_skipped(shapes, tmp_path):
    root, data = shapes
    first = (data / 'meta' / 'train.txt').read_text().split()[0]
    broken = data / 'train' / first
    good = broken.read_bytes()
    (root / 'checked.py').write_text(dedent('''
        _base_ = ['./tiny.py']
        pipeline = [dict(type='CheckedLoadImageFromFile'), dict(type='PackInputs')]
        train_dataloader = dict(dataset=dict(pipeline=pipeline))
        '''))
    work_dir = tmp_path / 'run'
    try:
        broken.write_bytes(b'')
        failed = train(root / 'checked.py', work_dir)
        assert failed.returncode == 1, failed.stderr[-3000:]
        assert re.fullmatch(
            rf'error: {re.escape(str(broken))}: cannot be read as an image \(.+\); replace or '
            r"remove the file, or skip such samples with skip_unreadable=True in the "
            r"pipeline's CheckedLoadImageFromFile", error_line(failed)), error_line(failed)
        assert listing(work_dir) == []

        skipped = train(root / 'checked.py', work_dir, '--resume', '--cfg-options',
                        'train_dataloader.dataset.pipeline.0.skip_unreadable=True')
        assert skipped.returncode == 0, skipped.stderr[-3000:]
        out = skipped.stdout + skipped.stderr
        assert f'skipped {broken}: cannot be read as an image (' in out
        assert '; 1 unreadable image(s) skipped so far by this data loading process' in out
        assert listing(work_dir) == ['epoch_1.pth', 'last_checkpoint']
    finally:
        broken.write_bytes(good)
