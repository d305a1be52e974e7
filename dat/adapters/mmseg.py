"""Register the backbone of every family (:mod:`dat.families`: ``DAT``, ``DATPlusPlus``) as
``mmseg`` backbones, and :class:`CheckedIoUMetric`, the IoU metric of the
DAT segmentation configs, and :class:`~dat.transforms.CheckedLoadImageFromFile` as a transform."""
from typing import Sequence

import torch
from mmseg.evaluation.metrics import IoUMetric
from mmseg.registry import METRICS, MODELS, TRANSFORMS

from dat.families import register_backbones
from dat.transforms import CheckedLoadImageFromFile

register_backbones(MODELS)
TRANSFORMS.register_module(module=CheckedLoadImageFromFile, force=True)


@METRICS.register_module(force=True)
class CheckedIoUMetric(IoUMetric):
    """mmseg's :class:`IoUMetric` that refuses ground-truth labels outside the classes.

    ``IoUMetric`` histograms the labels over ``[0, num_classes - 1]`` with ``torch.histc``,
    which drops every other value without a word: the pixels still count in the union of
    the class predicted there, so mIoU comes out wrong and nothing says so. That happens
    with a label map from another label set, or an ADE20K-style map (0 = other) read
    without ``reduce_zero_label``, where 150 becomes out of range. This metric raises a
    ``ValueError`` that names the label map and the values instead; the ignore index (255)
    stays allowed. Otherwise it is ``IoUMetric``, with the same arguments and results.
    """

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        num_classes = len(self.dataset_meta['classes'])
        for sample in data_samples:
            if self.format_only or 'gt_sem_seg' not in sample:
                continue
            label = sample['gt_sem_seg']['data']
            bad = ((label < 0) | (label >= num_classes)) & (label != self.ignore_index)
            if bad.any():
                values = torch.unique(label[bad]).tolist()
                name = sample.get('seg_map_path') or sample.get('img_path', 'a label map')
                raise ValueError(
                    f'{name}: label values {values[:10]} are outside the {num_classes} '
                    f'classes (0..{num_classes - 1}) and are not the ignore index '
                    f'{self.ignore_index}; check the label maps, the dataset classes and '
                    'reduce_zero_label')
        super().process(data_batch, data_samples)


__all__ = ['CheckedIoUMetric']
