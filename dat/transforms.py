"""A ``LoadImageFromFile`` whose failure names the file, for the data pipelines of
classification (mmpretrain), detection (mmdet) and segmentation (mmseg).

mmcv's ``LoadImageFromFile`` lets the decoder's error through: an empty file gives cv2's
``!buf.empty()`` assertion, with no file name. :class:`CheckedLoadImageFromFile` (registered
by ``dat.adapters.mmpretrain``, ``.mmdet`` and ``.mmseg`` in each library's transforms)
raises :class:`~dat.engine.faults.UnreadableImageError` naming the file and the cause, or,
with ``skip_unreadable=True`` (for large crawled datasets), skips the sample with a warning
and a count: the transform returns None, and mmengine's dataset takes another sample in its
place (training datasets only; in ``test_mode`` mmengine refuses a skipped sample).
"""
import os.path as osp
import re
from typing import Optional

from mmcv.transforms import LoadImageFromFile
from mmengine.logging import print_log

from dat.engine.faults import UnreadableImageError


class CheckedLoadImageFromFile(LoadImageFromFile):
    """mmcv's ``LoadImageFromFile`` (same arguments) that names the file it cannot read.

    Args:
        skip_unreadable (bool): skip a sample whose image cannot be read (with a warning
            that names it and counts the skipped ones of this data loading process) instead
            of stopping. Defaults to False.
        **kwargs: the arguments of mmcv's ``LoadImageFromFile``. Its ``ignore_empty`` (skip
            silently) is refused here: use ``skip_unreadable``.
    """

    def __init__(self, *args, skip_unreadable: bool = False, **kwargs):
        if kwargs.get('ignore_empty'):
            raise ValueError('CheckedLoadImageFromFile: ignore_empty=True skips unreadable '
                             'images silently; use skip_unreadable=True (warns and counts)')
        super().__init__(*args, **kwargs)
        self.skip_unreadable = bool(skip_unreadable)
        self.skipped = 0

    def transform(self, results: dict) -> Optional[dict]:
        filename = results['img_path']
        try:
            out = super().transform(results)
        except Exception as err:  # the decoder's or the file backend's, or mmcv's assert
            return self._unreadable(filename, _cause(filename, err))
        return out

    def _unreadable(self, filename, cause: str) -> None:
        message = f'{filename}: cannot be read as an image ({cause})'
        if not self.skip_unreadable:
            raise UnreadableImageError(
                f'{message}; replace or remove the file, or skip such samples with '
                f'skip_unreadable=True in the pipeline\'s {type(self).__name__}')
        self.skipped += 1
        print_log(f'skipped {message}; {self.skipped} unreadable image(s) skipped so far by '
                  'this data loading process', logger='current', level=30)
        return None


def _cause(filename, err: Exception) -> str:
    """The decoder's complaint, short: without cv2's source location or PIL's buffer id."""
    if isinstance(filename, str) and osp.isfile(filename) and osp.getsize(filename) == 0:
        return 'empty file'
    if isinstance(err, AssertionError):  # mmcv: the decoder returned None
        return 'the decoder returned no image'
    cause = ' '.join(str(err).split()) or type(err).__name__
    cause = re.sub(r'^OpenCV\(.*?\) \S+: error: \([^)]*\) ', '', cause)
    cause = re.sub(r' <_io\.BytesIO object at 0x[0-9a-f]+>', '', cause)
    return cause[:200]
