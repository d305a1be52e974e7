"""The faults of docs/faults.md on a toy mmengine run (in-process, seconds): a checkpoint
write that fails with ENOSPC, stale ``.tmp`` files, a NaN loss (stop, or skip up to a
limit), non-finite weights at a save. The pins of the mmengine code that the hooks rely on
are in tests/test_tools/test_mmengine_patches.py. The same faults through tools/train.py on
the quick-start config: test_fault_runs.py."""
import errno
import os
import re

import pytest
import torch
from fault_helpers import ITERS_PER_EPOCH, finite, toy_runner
from mmengine.fileio import LocalBackend
from mmengine.hooks import Hook

from dat.engine import (CheckpointSaveError, NonFiniteError, find_resumable_checkpoint,
                        remove_stale_temp_files)
from dat.engine.nonfinite_hook import SKIPPED_KEY
from dat.models.checkpoint import read_checkpoint

# tests/conftest.py puts mmengine's loggers, message hubs, visualizers and default scope
# back after each test; the runs resume as tools/train.py does, with dat.mmengine_patches.
pytestmark = pytest.mark.usefixtures('mmengine_patched')


def names(work_dir):
    return sorted(n for n in os.listdir(work_dir) if not re.match(r'^\d{8}_\d{6}$', n)
                  and n != 'vis_data')


def last_checkpoint(work_dir):
    return (work_dir / 'last_checkpoint').read_text()


# 1. A checkpoint write that fails ---------------------------------------------------------


@pytest.mark.parametrize('max_keep_ckpts', [1, -1])
def test_enospc_during_save_leaves_last_good_checkpoint_and_resume_continues(
        tmp_path, monkeypatch, max_keep_ckpts):
    real_put = LocalBackend.put
    writes = []

    def disk_full_at_epoch_2(self, obj, filepath):  # half the file, then a full disk
        writes.append(str(filepath))
        if str(filepath).endswith('epoch_2.pth.tmp'):
            with open(filepath, 'wb') as f:
                f.write(obj[:len(obj) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(filepath))
        real_put(self, obj, filepath)

    monkeypatch.setattr(LocalBackend, 'put', disk_full_at_epoch_2)
    runner = toy_runner(tmp_path, max_epochs=3, max_keep_ckpts=max_keep_ckpts)
    with pytest.raises(CheckpointSaveError) as info:
        runner.train()
    message = str(info.value)
    assert '\n' not in message
    assert message.startswith(f'cannot save checkpoint epoch_2.pth in {tmp_path}: No space '
                              'left on device (errno 28); the partial file was removed; the '
                              f'last good checkpoint is {tmp_path}/epoch_1.pth;')
    assert writes == [f'{tmp_path}/epoch_1.pth.tmp', f'{tmp_path}/epoch_2.pth.tmp']
    # the temporary file is gone, the good checkpoint is kept and named
    assert [n for n in names(tmp_path) if n.endswith('.pth') or '.tmp' in n] == ['epoch_1.pth']
    assert last_checkpoint(tmp_path) == f'{tmp_path}/epoch_1.pth'
    assert finite(tmp_path / 'epoch_1.pth')

    monkeypatch.setattr(LocalBackend, 'put', real_put)  # space freed
    resume = find_resumable_checkpoint(str(tmp_path))
    assert resume == f'{tmp_path}/epoch_1.pth'
    resumed = toy_runner(tmp_path, max_epochs=3, max_keep_ckpts=max_keep_ckpts,
                         resume_from=resume)
    resumed.train()
    assert resumed.iter == 3 * ITERS_PER_EPOCH
    assert [n for n in names(tmp_path) if n.endswith('.pth') or '.tmp' in n] == (
        ['epoch_3.pth'] if max_keep_ckpts == 1 else ['epoch_1.pth', 'epoch_2.pth', 'epoch_3.pth'])
    assert read_checkpoint(tmp_path / 'epoch_3.pth')['meta']['epoch'] == 3


def test_enospc_writing_last_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    from dat.engine import checkpoint_hook
    real = checkpoint_hook.atomic_write
    calls = []

    def full_at_second(path, data):
        calls.append(path)
        if len(calls) == 2:
            with open(path + '.tmp', 'wb') as f:  # what a write cut short leaves, removed
                f.write(data[:3])
            os.remove(path + '.tmp')
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path + '.tmp')
        real(path, data)

    monkeypatch.setattr(checkpoint_hook, 'atomic_write', full_at_second)
    with pytest.raises(CheckpointSaveError, match=r'epoch_2.pth .*No space left on device '
                       r'.*last good checkpoint is .*/epoch_1.pth;'):
        toy_runner(tmp_path, max_epochs=3, max_keep_ckpts=1).train()
    assert last_checkpoint(tmp_path) == f'{tmp_path}/epoch_1.pth'
    # the new complete file stays, and the old one was not removed (the removal comes last)
    assert [n for n in names(tmp_path) if n.endswith('.pth') or '.tmp' in n] == [
        'epoch_1.pth', 'epoch_2.pth']


def test_atomic_write_removes_its_temp_file_on_failure(tmp_path, monkeypatch):
    from dat.engine import atomic_write

    def fsync_full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    (tmp_path / 'last_checkpoint').write_text('old')
    monkeypatch.setattr(os, 'fsync', fsync_full)
    with pytest.raises(OSError, match='No space left'):
        atomic_write(str(tmp_path / 'last_checkpoint'), b'new')
    assert os.listdir(tmp_path) == ['last_checkpoint']
    assert (tmp_path / 'last_checkpoint').read_text() == 'old'


def test_stale_temp_files_are_removed_at_the_next_start(tmp_path):
    ours = ['epoch_7.pth.tmp', 'iter_120.pth.tmp', 'last_checkpoint.tmp', 'ckpt_3.tmp']
    others = ['notes.tmp', 'epoch_7.pth.tmp.bak', 'data.pth.tmp']
    for name in ours + others:
        (tmp_path / name).write_bytes(b'x' * 10)
    assert remove_stale_temp_files(str(tmp_path / 'missing')) == []
    removed = remove_stale_temp_files(str(tmp_path), filename_tmpl='ckpt_{}')
    assert sorted(removed) == sorted(str(tmp_path / n) for n in ours)
    assert sorted(os.listdir(tmp_path)) == sorted(others)

    # the hook removes them when training starts (tools/train.py already before the Runner)
    (tmp_path / 'epoch_2.pth.tmp').write_bytes(b'x' * 10)
    toy_runner(tmp_path, max_epochs=1).train()
    assert not (tmp_path / 'epoch_2.pth.tmp').exists()
    assert (tmp_path / 'epoch_1.pth').is_file()


# 2. A non-finite loss -------------------------------------------------------------------


@pytest.mark.parametrize('clip_grad', [True, False])
def test_nan_loss_stops_with_the_last_good_checkpoint_and_resume_continues(tmp_path, clip_grad):
    runner = toy_runner(tmp_path, max_epochs=3, clip_grad=clip_grad, poison=[6])
    with pytest.raises(NonFiniteError) as info:
        runner.train()
    message = str(info.value)
    assert '\n' not in message
    norm = ', gradient norm nan' if clip_grad else ''
    assert message.startswith(
        f'non-finite loss nan{norm} at iteration 6 (epoch 2): the training diverged; the '
        f'step was {"not " if clip_grad else ""}applied; the last good checkpoint is '
        f'{tmp_path}/epoch_1.pth; lower the lr'), message
    assert 'default_hooks.nonfinite.max_skips=N' in message
    assert [n for n in names(tmp_path) if n.endswith('.pth')] == ['epoch_1.pth']
    assert last_checkpoint(tmp_path) == f'{tmp_path}/epoch_1.pth'
    if clip_grad:  # the step was dropped: the weights in memory are still finite
        assert all(bool(p.isfinite().all()) for p in runner.model.parameters())

    resumed = toy_runner(tmp_path, max_epochs=3, clip_grad=clip_grad,
                         resume_from=find_resumable_checkpoint(str(tmp_path)))
    resumed.train()
    assert resumed.iter == 3 * ITERS_PER_EPOCH
    assert [n for n in names(tmp_path) if n.endswith('.pth')] == ['epoch_3.pth']
    assert finite(tmp_path / 'epoch_3.pth')


@pytest.mark.parametrize('clip_grad', [True, False])
def test_nan_steps_are_skipped_up_to_max_skips(tmp_path, clip_grad):
    runner = toy_runner(tmp_path, max_epochs=2, max_skips=2, clip_grad=clip_grad,
                        poison=[2, 6])
    runner.train()
    assert runner.iter == 2 * ITERS_PER_EPOCH
    assert runner.message_hub.get_info(SKIPPED_KEY) == 2
    assert finite(tmp_path / 'epoch_2.pth')
    assert read_checkpoint(tmp_path / 'epoch_2.pth')['message_hub']['runtime_info'][
        SKIPPED_KEY] == 2

    # the count goes on after a resume: two more NaN steps pass the limit of 3
    resumed = toy_runner(tmp_path, max_epochs=3, max_skips=3, clip_grad=clip_grad,
                         poison=[10, 11], resume_from=str(tmp_path / 'epoch_2.pth'))
    with pytest.raises(NonFiniteError, match=r'^non-finite loss nan.* at iteration 11 '
                       r'\(epoch 3\); more than max_skips=3 non-finite steps: the training '
                       rf'diverged; .*the last good checkpoint is {tmp_path}/epoch_2.pth;'):
        resumed.train()
    assert [n for n in names(tmp_path) if n.endswith('.pth')] == ['epoch_2.pth']


def test_skipped_step_leaves_weights_and_optimizer_state_untouched(tmp_path):
    runner = toy_runner(tmp_path, max_epochs=1, max_skips=1, poison=[3])
    seen = {}

    class Watch(Hook):  # the weights and SGD's momentum around the NaN iteration 3
        priority = 'LOWEST'

        def after_train_iter(self, runner_, batch_idx, data_batch=None, outputs=None):
            weight = runner_.model.linear.weight
            state = runner_.optim_wrapper.optimizer.state[weight]
            seen[runner_.iter + 1] = (weight.detach().clone(),
                                      state['momentum_buffer'].clone())

    runner.register_hook(Watch())
    runner.train()
    assert runner.message_hub.get_info(SKIPPED_KEY) == 1
    assert all(torch.equal(a, b) for a, b in zip(seen[2], seen[3]))
    assert not torch.equal(seen[3][0], seen[4][0])  # the next step is applied
    assert all(bool(t.isfinite().all()) for t in seen[4])


def test_lr_1e12_diverges_and_stops_without_a_checkpoint_of_nan(tmp_path):
    # the lr of the issue, without clipping: the loss overflows within the first epoch
    runner = toy_runner(tmp_path, max_epochs=2, clip_grad=False, lr=1e12)
    with pytest.raises(NonFiniteError) as info:
        runner.train()
    assert re.fullmatch(
        r'non-finite loss (nan|inf) at iteration [2-4] \(epoch 1\): the training diverged; '
        r'the step was applied; the last good checkpoint is none \(no checkpoint was saved '
        r'yet\); lower the lr \(or enable clip_grad\), or skip such steps with '
        r'--cfg-options default_hooks.nonfinite.max_skips=N', str(info.value)), info.value
    assert [n for n in names(tmp_path) if n.endswith('.pth') or 'checkpoint' in n] == []

    # nothing is left that blocks the next start: a sane lr trains to the end
    rerun = toy_runner(tmp_path, max_epochs=2, clip_grad=False)
    rerun.train()
    assert rerun.iter == 2 * ITERS_PER_EPOCH and finite(tmp_path / 'epoch_2.pth')


def test_non_finite_weights_are_never_saved_nor_delete_a_good_checkpoint(tmp_path):
    class BreakWeights(Hook):
        priority = 'VERY_HIGH'

        def after_train_epoch(self, runner):
            if runner.epoch + 1 == 2:
                with torch.no_grad():
                    runner.model.linear.bias.fill_(float('inf'))

    runner = toy_runner(tmp_path, max_epochs=3, max_skips=None)  # no NonFiniteCheckHook
    runner.register_hook(BreakWeights())
    with pytest.raises(NonFiniteError) as info:
        runner.train()
    assert str(info.value) == (
        'not saving epoch_2.pth: 1 of 2 weight tensors of the model are not finite (first: '
        'linear.bias); the training diverged; the last good checkpoint is '
        f'{tmp_path}/epoch_1.pth (kept)')
    assert [n for n in names(tmp_path) if n.endswith('.pth') or '.tmp' in n] == ['epoch_1.pth']
    assert last_checkpoint(tmp_path) == f'{tmp_path}/epoch_1.pth'


def test_max_skips_is_checked():
    from dat.engine import NonFiniteCheckHook
    for bad in (-1, 1.5, True, '3'):
        with pytest.raises(ValueError, match=r'max_skips must be an integer >= 0'):
            NonFiniteCheckHook(max_skips=bad)


def test_with_clip_grad_the_check_adds_no_reduction(tmp_path, monkeypatch):
    """With clip_grad the hook reads clipping's norm: it never computes one of its own."""
    calls = []
    real = torch.nn.utils.get_total_norm
    monkeypatch.setattr(torch.nn.utils, 'get_total_norm',
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    toy_runner(tmp_path, max_epochs=1, max_skips=2, poison=[2]).train()
    assert calls == []
    toy_runner(tmp_path / 'no_clip', max_epochs=1, max_skips=2, clip_grad=False,
               poison=[2]).train()
    assert len(calls) == ITERS_PER_EPOCH  # without clipping: one norm per step


def test_one_line_fault_of_an_error_raised_in_a_dataloader_worker():
    from torch.utils.data._utils import ExceptionWrapper

    from dat.engine import UnreadableImageError, one_line_fault
    try:
        raise UnreadableImageError('data/a.png: cannot be read as an image (empty file)')
    except UnreadableImageError:
        wrapped = ExceptionWrapper(where='in DataLoader worker process 0')
    with pytest.raises(UnreadableImageError) as info:
        wrapped.reraise()
    assert '\n' in str(info.value)
    assert one_line_fault(info.value) == 'data/a.png: cannot be read as an image (empty file)'


def test_steps_a_loss_scaler_hands_to_a_fused_optimizer_are_left_to_it():
    """GradScaler passes ``found_inf`` (or ``grad_scaler``) to an optimizer that skips by
    itself (fused AdamW): its overflow steps are the scaler's business, not a divergence."""
    from dat.engine import NonFiniteCheckHook
    hook = NonFiniteCheckHook()
    param = torch.nn.Parameter(torch.ones(2))
    param.grad = torch.full((2, ), float('inf'))
    optimizer = torch.optim.SGD([param], lr=1.0)
    for kwargs in (dict(found_inf=torch.ones(())), dict(grad_scaler=object())):
        hook._clip_norm = float('inf')
        hook._before_step(optimizer, (), kwargs)
        assert param.grad is not None and hook._dropped_norm is None
    hook._clip_norm = float('inf')
    hook._before_step(optimizer, (), {})  # without a scaler the step is dropped
    assert param.grad is None and hook._dropped_norm == float('inf')


def test_iteration_based_run_stops_naming_the_iteration_only(tmp_path):
    runner = toy_runner(tmp_path, max_epochs=3, poison=[7], by_epoch=False)
    with pytest.raises(NonFiniteError) as info:
        runner.train()
    assert str(info.value).startswith(
        'non-finite loss nan, gradient norm nan at iteration 7: the training diverged; the '
        f'step was not applied; the last good checkpoint is {tmp_path}/iter_4.pth;')
    assert [n for n in names(tmp_path) if n.endswith('.pth')] == ['iter_4.pth']
    resumed = toy_runner(tmp_path, max_epochs=3, by_epoch=False,
                         resume_from=find_resumable_checkpoint(str(tmp_path)))
    resumed.train()
    assert resumed.iter == 3 * ITERS_PER_EPOCH
    assert [n for n in names(tmp_path) if n.endswith('.pth')] == ['iter_12.pth']
