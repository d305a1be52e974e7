"""A stop signal is a checkpoint: SIGTERM, SIGINT and SIGUSR1 (what Slurm sends on
preemption, ``scancel`` and before a time limit) end a training run after the current
iteration, with an iteration checkpoint that resumes exactly.

- :func:`install_stop_signals` (``tools/train.py`` and ``tools/test.py`` call it first)
  makes those signals, and those named in ``DAT_STOP_SIGNALS`` (e.g. ``USR2,HUP``), set a
  flag instead of killing the process. Forked dataloader workers inherit the handler, so a
  signal sent to the whole process group does not kill them.
- :class:`StopSignalHook` (added to the config by :func:`add_stop_hook`) reduces the flag
  over all ranks after every training, validation and test iteration (one small
  all-reduce: no rank is left waiting in a collective while another exits). When any rank
  got a signal, rank 0 writes ``iter_N.pth`` atomically (weights, optimizer, schedulers,
  AMP scaler, message hub; ``N`` is the number of iterations done, so nothing trained is
  lost), ``last_checkpoint`` names it, every rank waits for the write, ``stopped_by``
  names the signal (the same on every rank) and the run raises :class:`TrainingStopped`,
  which ``tools/train.py`` prints as one line before it exits with :data:`EXIT_STOPPED`.
  Further signals during the save are ignored; a kill during it leaves the previous
  checkpoint in place (the atomic save of :mod:`dat.engine.checkpoint_hook`).
- Resume is exact mid-epoch: mmengine's ``EpochBasedTrainLoop`` restarts an epoch from its
  first batch; the hook makes the resumed epoch skip the batches already trained (in the
  sampler's order of that epoch), so the weights are those of a run that never stopped.
  ``IterBasedTrainLoop`` skips them itself.
- :func:`resume_after_requeue`: a requeued job (``DAT_AUTO_RESUME=1``, set by
  ``tools/slurm_train.sh``, or Slurm's ``SLURM_RESTART_COUNT`` > 0) resumes from its work
  dir without ``--resume``.
"""
import os
import os.path as osp
import signal
from typing import Optional

import torch
from mmengine.dist import all_reduce, broadcast_object_list, is_main_process
from mmengine.hooks import CheckpointHook, Hook
from mmengine.registry import HOOKS
from mmengine.runner import EpochBasedTrainLoop

from .checkpoint_hook import atomic_write, check_finite_weights, save_checkpoint_atomically
from .faults import CheckpointSaveError, last_good_checkpoint

#: The exit status of a run stopped by a signal after saving (sysexits' EX_TEMPFAIL: try
#: again). Under torchrun (``tools/dist_train.sh``) the processes exit with 0 instead, so
#: that the launcher does not report them as failed, and dist_train.sh exits with it.
EXIT_STOPPED = 75
STOP_SIGNALS = ('SIGTERM', 'SIGINT', 'SIGUSR1')
#: The file in the work dir that names the signal of the last stop (``SIGUSR1``).
STOPPED_BY = 'stopped_by'


class TrainingStopped(Exception):
    """A run ended by a stop signal; its message is one line."""


class _Stop:
    signal: Optional[str] = None  # the name of the first signal received
    installed = False


def stop_requested() -> Optional[str]:
    """The name of the first stop signal this process received, or None."""
    return _Stop.signal


def _handler(signum, frame):
    name = signal.Signals(signum).name
    if _Stop.signal is None:
        _Stop.signal = name
        message = (f'received {name}: stopping after the current iteration '
                   '(training saves a checkpoint first)\n')
    else:
        message = f'received {name}: already stopping (a save may be under way)\n'
    if os.environ.get('RANK', os.environ.get('SLURM_PROCID', '0')) == '0':
        os.write(2, message.encode())  # not print(): safe inside a write to stderr


def stop_signal_names():
    extra = os.environ.get('DAT_STOP_SIGNALS', '')
    names = list(STOP_SIGNALS)
    for name in filter(None, (n.strip().upper() for n in extra.split(','))):
        if name.isdigit():  # srun --signal=10@120
            name = signal.Signals(int(name)).name
        name = name if name.startswith('SIG') else 'SIG' + name
        if name not in names:
            names.append(name)
    return names


def install_stop_signals() -> None:
    """Make the stop signals set a flag (see the module doc); in the main thread only."""
    for name in stop_signal_names():
        signum = getattr(signal, name, None)
        if signum is None:
            raise SystemExit(f'error: DAT_STOP_SIGNALS names {name}, which is no signal')
        signal.signal(signum, _handler)
    _Stop.installed = True


def add_stop_hook(cfg) -> None:
    """Add :class:`StopSignalHook` to ``cfg.custom_hooks`` unless it is there."""
    hooks = list(cfg.get('custom_hooks') or [])
    names = ('StopSignalHook', 'dat.StopSignalHook')
    if not any(isinstance(h, dict) and h.get('type') in names for h in hooks):
        hooks.append(dict(type='StopSignalHook'))
    cfg.custom_hooks = hooks


def resume_after_requeue(resume: Optional[str]) -> Optional[str]:
    """``'auto'`` (resume from the work dir) for a requeued job that was not given
    ``--resume``: ``DAT_AUTO_RESUME=1`` or ``SLURM_RESTART_COUNT`` > 0; else ``resume``."""
    if resume is not None:
        return resume
    try:
        restarts = int(os.environ.get('SLURM_RESTART_COUNT', '0') or 0)
    except ValueError:
        restarts = 0
    if os.environ.get('DAT_AUTO_RESUME') == '1' or restarts > 0:
        return 'auto'
    return resume


def exit_stopped(err: TrainingStopped) -> None:
    """Print the one line of ``err`` (rank 0), end the process group, exit with
    :data:`EXIT_STOPPED` (0 under torchrun)."""
    import sys

    from dat.runner_utils import finish_distributed
    if os.environ.get('RANK', '0') == '0':
        print(f'stopped: {err}', file=sys.stderr, flush=True)
    finish_distributed()
    raise SystemExit(0 if os.environ.get('TORCHELASTIC_RUN_ID') else EXIT_STOPPED)


def _any_rank_stopped() -> Optional[str]:
    """The stop signal of any rank (the same name on every rank), or None."""
    signum = signal.Signals[_Stop.signal].value if _Stop.signal else 0
    flag = torch.tensor([signum], dtype=torch.int32)
    all_reduce(flag, op='max')  # a no-op without a process group
    return signal.Signals(int(flag.item())).name if flag.item() else None


class _ResumedEpoch:
    """``EpochBasedTrainLoop.run_epoch`` for the epoch a mid-epoch checkpoint stopped in:
    the first ``skip`` batches of the epoch's order are not trained again."""

    def __init__(self, loop, skip):
        self.loop, self.skip = loop, skip

    def __call__(self):
        loop, runner = self.loop, self.loop.runner
        del loop.run_epoch  # the next epochs run as usual
        runner.call_hook('before_train_epoch')  # sets the sampler's epoch
        runner.model.train()
        batches = _skip_batches(loop.dataloader, self.skip)
        for idx, data_batch in enumerate(batches, start=self.skip):
            loop.run_iter(idx, data_batch)
        runner.call_hook('after_train_epoch')
        loop._epoch += 1


class _SkipIndices:
    """A sampler that leaves out the first ``skip`` indices of ``sampler`` (its length is
    that of ``sampler``, so that the loop's count of batches stays that of a full epoch)."""

    def __init__(self, sampler, skip):
        self.sampler, self.skip = sampler, skip

    def __iter__(self):
        iterator = iter(self.sampler)
        for _ in range(self.skip):
            next(iterator, None)
        return iterator

    def __len__(self):
        return len(self.sampler)


def _skip_batches(dataloader, skip):
    """Iterate ``dataloader`` from its batch ``skip``. With torch's ``BatchSampler`` the
    indices are skipped (no image is read); with other batch samplers (mmdet's aspect-ratio
    grouping) the batches are read and dropped, as mmengine's IterBasedTrainLoop does."""
    batch_sampler = getattr(dataloader, 'batch_sampler', None)
    if type(batch_sampler) is torch.utils.data.BatchSampler:
        original = batch_sampler.sampler
        batch_sampler.sampler = _SkipIndices(original, skip * batch_sampler.batch_size)
        try:
            yield from dataloader
        finally:
            batch_sampler.sampler = original
        return
    iterator = iter(dataloader)
    for _ in range(skip):
        next(iterator)
    yield from iterator


@HOOKS.register_module()
class StopSignalHook(Hook):
    """Save an iteration checkpoint and stop when any rank got a stop signal (see the
    module doc). Runs after the other hooks of an iteration (the checkpoint and logger
    hooks), so the last iteration is logged and not saved twice."""

    priority = 'LOWEST'

    def before_train(self, runner) -> None:
        if not _Stop.installed:
            install_stop_signals()
        self._last_ckpt = runner.message_hub.get_info('last_ckpt')
        self._saved_iter = runner.iter if runner.iter else None
        loop = runner.train_loop
        if isinstance(loop, EpochBasedTrainLoop) and runner.iter:
            skip = runner.iter - runner.epoch * len(loop.dataloader)
            if 0 < skip < len(loop.dataloader):
                runner.logger.info(f'resuming epoch {runner.epoch + 1} at its batch '
                                   f'{skip + 1}: skipping the {skip} batches already trained')
                loop.run_epoch = _ResumedEpoch(loop, skip)

    def _note_saves(self, runner, done_iters):
        last = runner.message_hub.get_info('last_ckpt')
        if last != self._last_ckpt:  # the checkpoint hook saved after this step
            self._last_ckpt, self._saved_iter = last, done_iters

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self._note_saves(runner, runner.iter + 1)
        stop = _any_rank_stopped()
        if not stop:
            return
        where = ''
        if isinstance(runner.train_loop, EpochBasedTrainLoop):
            per_epoch = len(runner.train_loop.dataloader)
            if batch_idx + 1 == per_epoch:
                return  # the epoch's own hooks run first (after_train_epoch stops)
            where = f' (epoch {runner.epoch + 1}, batch {batch_idx + 1}/{per_epoch})'
        self._stop(runner, stop, runner.epoch, runner.iter + 1,
                   f'iteration {runner.iter + 1}{where}')

    def after_train_epoch(self, runner) -> None:
        """At the last batch of an epoch the stop waits for the end of the epoch (the
        schedulers' epoch step, the epoch's checkpoint), so that the resumed run starts the
        next epoch; its validation is skipped."""
        self._note_saves(runner, runner.iter)
        stop = _any_rank_stopped()
        if stop:
            self._stop(runner, stop, runner.epoch + 1, runner.iter,
                       f'the end of epoch {runner.epoch + 1} (iteration {runner.iter})')

    def after_val_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        stop = _any_rank_stopped()
        if not stop:
            return
        if getattr(runner, '_train_loop', None) is not None and \
                not isinstance(runner._train_loop, dict):
            # validation during training: the epoch (or iterations) before it are kept
            self._stop(runner, stop, runner.epoch, runner.iter,
                       f'validation after iteration {runner.iter}')
        raise TrainingStopped(f'{stop} during validation, at batch {batch_idx + 1}')

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        stop = _any_rank_stopped()
        if stop:
            raise TrainingStopped(f'{stop} during testing, at batch {batch_idx + 1}; '
                                  'no results were written')

    def _stop(self, runner, stop, epoch, done_iters, where):
        name = f'iter_{done_iters}.pth'
        if self._saved_iter == done_iters:
            saved = f'{self._last_ckpt} was just saved'
        else:
            saved = f'saved {self._save(runner, stop, name, epoch, done_iters)}'
        if is_main_process():  # tools/slurm_train.sh requeues for its own signal only
            atomic_write(osp.join(runner.work_dir, STOPPED_BY), stop.encode())
        raise TrainingStopped(
            f'{stop} at {where}: {saved}; tools/train.py ... --resume continues '
            'from it (tools/slurm_train.sh requeues and resumes by itself)')

    def _save(self, runner, stop, name, epoch, done_iters) -> str:
        hook = next((h for h in runner.hooks if isinstance(h, CheckpointHook)), None)
        out_dir = getattr(hook, 'out_dir', None) or runner.work_dir
        check_finite_weights(runner.model, name, runner.work_dir)
        path = osp.join(out_dir, name)
        error = [None]
        if is_main_process():
            try:
                save_checkpoint_atomically(
                    runner, out_dir, name, meta=dict(epoch=epoch, iter=done_iters),
                    by_epoch=False, save_optimizer=True, save_param_scheduler=True)
                atomic_write(osp.join(runner.work_dir, 'last_checkpoint'), path.encode())
            except OSError as err:
                error[0] = (f'{stop}: cannot save checkpoint {name} in {out_dir}: '
                            f'{err.strerror or err} (errno {err.errno}); the last good '
                            f'checkpoint is {last_good_checkpoint(runner.work_dir)}')
        broadcast_object_list(error)  # every rank waits for the write
        if error[0] is not None:
            raise CheckpointSaveError(error[0])
        runner.message_hub.update_info('last_ckpt', path)
        return path
