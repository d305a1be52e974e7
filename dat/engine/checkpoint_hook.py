"""Checkpoints that a kill, a full disk or a diverged run cannot break, and a resume that
steps over a damaged one.

mmengine's ``CheckpointHook`` removes the oldest checkpoint, then writes the new one in
place, then ``last_checkpoint``: a kill (or a full disk) in between leaves a truncated file
that ``--resume`` picks and fails on, with the previous checkpoint already gone; a run whose
weights went NaN saves them and deletes the good ones. :class:`AtomicCheckpointHook` (the
checkpoint hook of the DAT configs) keeps mmengine's behaviour and arguments and changes the
order and the writes:

1. the weights are checked: if any is not finite, nothing is written or removed and the run
   stops with a :class:`~dat.engine.faults.NonFiniteError`;
2. the checkpoint goes to ``NAME.tmp`` in the same directory (through the configured file
   backend, mmengine's local one by default), is fsynced and renamed to ``NAME``;
3. ``last_checkpoint`` is then written the same way (:func:`atomic_write`), naming that file;
4. only then is the oldest checkpoint beyond ``max_keep_ckpts`` removed.

If a write fails (e.g. ``[Errno 28] No space left on device``), its ``.tmp`` file is removed
and the run stops with a one-line :class:`~dat.engine.faults.CheckpointSaveError` that names
the directory, the cause and the last good checkpoint. ``.tmp`` files that a kill left are
removed when the next run starts (:func:`remove_stale_temp_files`, also called by
``tools/train.py`` before mmengine writes anything into the work dir).

At every moment the directory holds complete checkpoints, and ``last_checkpoint`` names one.
:func:`find_resumable_checkpoint` is what ``tools/train.py --resume`` continues from.

Private mmengine API: the hook overrides ``CheckpointHook._save_checkpoint_with_step``, the
one method through which mmengine 0.10's hook saves every checkpoint (periodic, last and the
re-save after a new best one). ``tests/test_checkpoints/test_fault_tolerance.py`` pins that
method's source, so an mmengine upgrade that changes it fails there with what to check.
"""
import os
import os.path as osp
import re
from typing import Callable, List, Optional

import torch
from mmengine.dist import broadcast_object_list, is_main_process
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS
from mmengine.runner.checkpoint import find_latest_checkpoint

from dat.models.checkpoint import CheckpointError, read_checkpoint

from .faults import CheckpointSaveError, NonFiniteError, last_good_checkpoint

TMP_SUFFIX = '.tmp'
#: Checkpoints that CheckpointHook names by default.
CHECKPOINT_NAME = re.compile(r'^(epoch|iter)_\d+\.pth$')


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def atomic_write(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` is never seen incomplete: into
    ``path + '.tmp'``, flushed and fsynced, then renamed over ``path``. If the write fails
    (e.g. no space left), the ``.tmp`` file is removed and the ``OSError`` raised."""
    path = osp.abspath(path)
    directory = osp.dirname(path)
    os.makedirs(directory, exist_ok=True)
    tmp = path + TMP_SUFFIX
    try:
        with open(tmp, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        _remove_quietly(tmp)
        raise
    _fsync_dir(directory)


def remove_stale_temp_files(directory: str, filename_tmpl: Optional[str] = None) -> List[str]:
    """Remove the ``.tmp`` files of checkpoint writes that a kill or a failure interrupted
    (``epoch_N.pth.tmp``, ``iter_N.pth.tmp``, names of ``filename_tmpl`` and
    ``last_checkpoint.tmp``) from ``directory``; other files are left alone.

    Returns:
        list[str]: the removed files.
    """
    if not osp.isdir(directory):
        return []
    names = [CHECKPOINT_NAME]
    if filename_tmpl:
        names.append(re.compile('^' + re.escape(filename_tmpl).replace(r'\{\}', r'\d+') + '$'))
    removed = []
    for name in sorted(os.listdir(directory)):
        if not name.endswith(TMP_SUFFIX):
            continue
        stem = name[:-len(TMP_SUFFIX)]
        if stem == 'last_checkpoint' or any(p.match(stem) for p in names):
            path = osp.join(directory, name)
            _remove_quietly(path)
            removed.append(path)
    return removed


def check_finite_weights(model: torch.nn.Module, what: str, work_dir: str) -> None:
    """Raise :class:`~dat.engine.faults.NonFiniteError` (naming ``what`` and the last good
    checkpoint of ``work_dir``) if a floating-point weight or buffer of ``model`` is NaN or
    inf. One reduction per tensor and one host sync per device: this runs before a
    checkpoint is saved, never per iteration."""
    if is_model_wrapper(model):
        model = model.module
    tensors = {k: t for k, t in model.state_dict().items()
               if torch.is_tensor(t) and t.is_floating_point()}
    by_device = {}
    for name, tensor in tensors.items():
        by_device.setdefault(tensor.device, []).append(name)
    finite = all(bool(torch.stack([tensors[n].isfinite().all() for n in names]).all())
                 for names in by_device.values())
    if finite:
        return
    bad = [n for n, t in tensors.items() if not bool(t.isfinite().all())]
    raise NonFiniteError(
        f'not saving {what}: {len(bad)} of {len(tensors)} weight tensors of the model are not '
        f'finite (first: {bad[0]}); the training diverged; the last good checkpoint is '
        f'{last_good_checkpoint(work_dir)} (kept)')


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """mmengine's :class:`~mmengine.hooks.CheckpointHook` (same arguments) whose checkpoints,
    ``last_checkpoint`` and removals survive a kill or a full disk at any moment, and that
    never saves non-finite weights (see the module doc).

    Checkpoints in a local ``out_dir`` are written atomically (with the configured
    ``backend_args`` if they name a local backend); an ``out_dir`` URL or another backend
    is written as mmengine writes it.
    """

    def before_train(self, runner) -> None:
        super().before_train(runner)
        # a FileClient (deprecated file_client_args) or a remote backend: written in place
        self._atomic = isinstance(self.file_backend, LocalBackend)
        if is_main_process():
            for directory in {self.out_dir, runner.work_dir}:
                for path in remove_stale_temp_files(directory, self.filename_tmpl):
                    runner.logger.info(f'removed {path}, left by an interrupted save')

    def _save_checkpoint_with_step(self, runner, step, meta):
        # mmengine's steps (see the class doc for the order), with the failure of any write
        # reported, after removing what it left, on every rank in one line.
        ckpt_filename = self.filename_tmpl.format(step)
        check_finite_weights(runner.model, ckpt_filename, runner.work_dir)
        keep = self.max_keep_ckpts > 0  # else mmengine keeps no list of checkpoints
        kept, last = list(self.keep_ckpt_ids) if keep else None, self.last_ckpt
        oldest = None
        if keep and not (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                oldest = self.keep_ckpt_ids.popleft()
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))
        self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)

        error = [None]
        if is_main_process():
            try:
                self._write_checkpoint(runner, ckpt_filename, meta)
                atomic_write(osp.join(runner.work_dir, 'last_checkpoint'),
                             self.last_ckpt.encode())
            except OSError as err:
                error[0] = (f'cannot save checkpoint {ckpt_filename} in {self.out_dir}: '
                            f'{err.strerror or err} (errno {err.errno}); the partial file '
                            'was removed; the last good checkpoint is '
                            f'{last_good_checkpoint(runner.work_dir)}; free space (or fix '
                            'the cause), then continue with tools/train.py ... --resume')
        broadcast_object_list(error)  # a write fails on rank 0: every rank stops
        if error[0] is not None:
            if keep:
                self.keep_ckpt_ids.clear()
                self.keep_ckpt_ids.extend(kept)
                runner.message_hub.update_info('keep_ckpt_ids', kept)
            self.last_ckpt = last
            runner.message_hub.update_info('last_ckpt', last)
            raise CheckpointSaveError(error[0])
        if oldest is not None and is_main_process():
            path = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(oldest))
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):  # checkpoints saved by deepspeed
                self.file_backend.rmtree(path)

    def _write_checkpoint(self, runner, filename: str, meta: dict) -> None:
        """``runner.save_checkpoint`` into ``filename + '.tmp'``, then fsync and rename; the
        ``.tmp`` file is removed if anything fails (or the process is interrupted)."""
        kwargs = dict(save_optimizer=self.save_optimizer,
                      save_param_scheduler=self.save_param_scheduler, meta=meta,
                      by_epoch=self.by_epoch, backend_args=self.backend_args, **self.args)
        if not self._atomic:
            runner.save_checkpoint(self.out_dir, filename, self.file_client_args, **kwargs)
            return
        save_checkpoint_atomically(runner, self.out_dir, filename, self.file_client_args,
                                   **kwargs)


def save_checkpoint_atomically(runner, out_dir: str, filename: str, *args, **kwargs) -> None:
    """``runner.save_checkpoint(out_dir, filename, ...)`` into a local ``filename + '.tmp'``,
    fsynced and renamed to ``filename``; the ``.tmp`` file is removed if anything fails (or
    the process is interrupted)."""
    path = osp.join(out_dir, filename)
    tmp = path + TMP_SUFFIX
    try:
        runner.save_checkpoint(out_dir, filename + TMP_SUFFIX, *args, **kwargs)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        _remove_quietly(tmp)
        raise
    _fsync_dir(out_dir)


def find_resumable_checkpoint(work_dir: str,
                              warn: Callable[[str], None] = print) -> Optional[str]:
    """The checkpoint that ``--resume`` continues from.

    The one that ``last_checkpoint`` names, as in mmengine; if that is missing or cannot be
    read (see :func:`~dat.models.checkpoint.read_checkpoint`), ``warn`` says so, naming
    the file, and the newest readable ``epoch_*.pth`` / ``iter_*.pth`` of ``work_dir`` (by
    modification time) is taken instead.

    Returns:
        str | None: None when ``work_dir`` has no checkpoint at all.

    Raises:
        CheckpointError: if there are checkpoints but none can be read.
    """
    if not osp.isdir(work_dir):
        return None
    named = find_latest_checkpoint(work_dir) if osp.isfile(
        osp.join(work_dir, 'last_checkpoint')) else None
    found = [osp.join(work_dir, n) for n in os.listdir(work_dir) if CHECKPOINT_NAME.match(n)]
    found.sort(key=lambda p: (osp.getmtime(p), p), reverse=True)
    candidates: List[str] = ([named] if named else []) + [
        p for p in found if not (named and osp.abspath(p) == osp.abspath(named))]
    problems = []
    for path in candidates:
        try:
            read_checkpoint(path, map_location='cpu', mmap=True)
        except CheckpointError as err:
            problems.append(str(err))
            warn(f'warning: cannot resume from {err}; trying the next newest checkpoint')
            continue
        if problems:
            warn(f'resuming from {path}, the newest readable checkpoint')
        return path
    if problems:
        raise CheckpointError(f'no checkpoint in {work_dir} can be read to resume from; '
                              f'{len(problems)} unreadable (first: {problems[0]})')
    return None
