"""Checkpoints that a kill cannot break, and a resume that steps over a damaged one.

mmengine's ``CheckpointHook`` removes the oldest checkpoint, then writes the new one in
place, then ``last_checkpoint``: a kill (or a full disk) in between leaves a truncated file
that ``--resume`` picks and fails on, with the previous checkpoint already gone.
:class:`AtomicCheckpointHook` (the checkpoint hook of the DAT configs) keeps mmengine's
behaviour and arguments and changes the order and the writes:

1. the checkpoint goes to ``NAME.tmp`` in the same directory, is flushed, fsynced and
   renamed to ``NAME`` (:class:`AtomicLocalBackend`, through mmengine's file backends);
2. ``last_checkpoint`` is then written the same way, naming that complete file;
3. only then is the oldest checkpoint beyond ``max_keep_ckpts`` removed.

At every moment the directory holds complete checkpoints, and ``last_checkpoint`` names one.
:func:`find_resumable_checkpoint` is what ``tools/train.py --resume`` continues from.
"""
import os
import os.path as osp
import re
from typing import Callable, List, Optional

from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend, register_backend
from mmengine.hooks import CheckpointHook
from mmengine.registry import HOOKS
from mmengine.runner.checkpoint import find_latest_checkpoint

from dat.models.checkpoint import CheckpointError, read_checkpoint

#: Name of :class:`AtomicLocalBackend` in mmengine's file backends (``backend_args``).
ATOMIC_BACKEND = 'dat_atomic_local'
TMP_SUFFIX = '.tmp'
#: Checkpoints that CheckpointHook names by default.
CHECKPOINT_NAME = re.compile(r'^(epoch|iter)_\d+\.pth$')


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str, data: bytes, write: Optional[Callable] = None) -> None:
    """Write ``data`` to ``path`` so that ``path`` is never seen incomplete: into
    ``path + '.tmp'``, flushed and fsynced, then renamed over ``path``.

    ``write(file, data)`` writes the bytes (default: ``file.write(data)``).
    """
    path = osp.abspath(path)
    directory = osp.dirname(path)
    os.makedirs(directory, exist_ok=True)
    tmp = path + TMP_SUFFIX
    with open(tmp, 'wb') as f:
        if write is None:
            f.write(data)
        else:
            write(f, data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(directory)


class AtomicLocalBackend(LocalBackend):
    """mmengine's ``LocalBackend`` whose ``put`` and ``put_text`` write with
    :func:`atomic_write`."""

    def put(self, obj: bytes, filepath) -> None:
        atomic_write(os.fspath(filepath), obj, self.write_bytes)

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        self.put(obj.encode(encoding), filepath)

    def write_bytes(self, file, data: bytes) -> None:
        """Write the bytes into the open temporary file (a subclass may slow this down
        to test kills during a write)."""
        file.write(data)


register_backend(ATOMIC_BACKEND, AtomicLocalBackend, force=True)


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """mmengine's :class:`~mmengine.hooks.CheckpointHook` (same arguments) whose checkpoints,
    ``last_checkpoint`` and removals survive a kill at any moment (see the module doc).

    Local checkpoints are written with :class:`AtomicLocalBackend`; ``backend_args`` that
    name another backend (or an ``out_dir`` URL) are used as given.
    """

    def __init__(self, *args, out_dir: Optional[str] = None,
                 backend_args: Optional[dict] = None, **kwargs):
        if backend_args is None and kwargs.get('file_client_args') is None \
                and (out_dir is None or '://' not in str(out_dir)):
            backend_args = dict(backend=ATOMIC_BACKEND)
        super().__init__(*args, out_dir=out_dir, backend_args=backend_args, **kwargs)

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if is_main_process():  # temporary files of writes that a kill interrupted
            for directory in {self.out_dir, runner.work_dir}:
                if not osp.isdir(directory):
                    continue
                for name in os.listdir(directory):
                    if name.endswith(TMP_SUFFIX) and (
                            CHECKPOINT_NAME.match(name[:-len(TMP_SUFFIX)])
                            or name == 'last_checkpoint' + TMP_SUFFIX):
                        os.remove(osp.join(directory, name))

    def _save_checkpoint_with_step(self, runner, step, meta):
        # CheckpointHook's steps, in an order that a kill cannot break: the new checkpoint
        # (its message hub already listing it among the kept ones), then last_checkpoint,
        # then the removal of the oldest one.
        oldest = None
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids
                                            and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                oldest = self.keep_ckpt_ids.popleft()
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))

        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        runner.save_checkpoint(
            self.out_dir,
            ckpt_filename,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args)
        if not is_main_process():
            return
        atomic_write(osp.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt.encode())
        if oldest is not None:
            path = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(oldest))
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):  # checkpoints saved by deepspeed
                self.file_backend.rmtree(path)


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
