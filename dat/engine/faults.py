"""The faults that stop a training run on purpose, each with a one-line message that says
what happened and which checkpoint is the last good one (see ``docs/faults.md``).

``tools/train.py`` prints a :class:`TrainingFault` as ``error: <message>`` and exits with
status 1.
"""
import os.path as osp


class TrainingFault(RuntimeError):
    """A fault that ends a training run: its message is one line."""


class CheckpointSaveError(TrainingFault):
    """A checkpoint could not be written (e.g. no space left on the device)."""


class NonFiniteError(TrainingFault):
    """The loss, the gradients or the weights are not finite (NaN or inf)."""


def last_good_checkpoint(work_dir: str) -> str:
    """The checkpoint that ``work_dir/last_checkpoint`` names (what ``--resume`` continues
    from), or a phrase saying that there is none, for the messages of the faults."""
    try:
        with open(osp.join(work_dir, 'last_checkpoint')) as f:
            path = f.read().strip()
    except OSError:
        return 'none (no checkpoint was saved yet)'
    if not osp.isfile(path):
        return f'none ({path}, named by last_checkpoint, is missing)'
    return path


def one_line_fault(err: BaseException) -> str:
    """The message of a fault, on one line; for one re-raised by a DataLoader worker (whose
    message is the worker's traceback), its last line without the exception's name."""
    text = str(err).strip()
    if 'Traceback (most recent call last)' in text:
        text = text.splitlines()[-1]
        name = f'{type(err).__name__}: '
        text = text.split(name, 1)[1] if name in text else text
    return ' '.join(text.split())


class UnreadableImageError(TrainingFault):
    """An image file of the dataset cannot be read (empty, truncated, not an image)."""
