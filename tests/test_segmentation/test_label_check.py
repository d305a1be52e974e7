"""Label values outside the class range: mmseg 1.2.2's IoUMetric drops them silently (its
histograms only span the classes), so the DAT configs evaluate with CheckedIoUMetric,
which raises an error that names the label map."""
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.evaluation import IoUMetric
from mmseg.registry import DATASETS, METRICS
from mmseg.structures import SegDataSample
from PIL import Image

import dat.adapters.mmseg  # noqa: F401  (registers CheckedIoUMetric)


def sample(pred, label, path='x.png'):
    return SegDataSample(
        pred_sem_seg=PixelData(data=torch.as_tensor(pred)[None]),
        gt_sem_seg=PixelData(data=torch.as_tensor(label)[None]),
        metainfo=dict(seg_map_path=path, img_path=path)).to_dict()


def evaluate(metric, samples):
    metric.dataset_meta = dict(classes=('a', 'b', 'c'))
    metric.process({}, samples)
    return metric.compute_metrics(metric.results)['mIoU']


def test_same_as_iou_metric_on_valid_labels():
    rng = np.random.default_rng(0)
    label = rng.integers(0, 3, (16, 16))
    label[:2] = 255  # the ignore index is fine
    pred = rng.integers(0, 3, (16, 16))
    checked = METRICS.build(dict(type='CheckedIoUMetric', iou_metrics=['mIoU']))
    plain = IoUMetric(iou_metrics=['mIoU'])
    assert evaluate(checked, [sample(pred, label)]) == evaluate(plain, [sample(pred, label)])


def test_out_of_range_label_raises_where_iou_metric_is_silently_wrong():
    label = np.zeros((8, 8), np.int64)
    label[:, 4:] = 7  # not one of the 3 classes, and not 255
    pred = np.zeros((8, 8), np.int64)
    # mmseg's own metric: no error, and class 0 gets IoU 50 although every pixel of
    # class 0 is right (the class-7 pixels count in its union).
    assert evaluate(IoUMetric(iou_metrics=['mIoU']), [sample(pred, label)]) == 50.0
    checked = METRICS.build(dict(type='CheckedIoUMetric', iou_metrics=['mIoU']))
    checked.dataset_meta = dict(classes=('a', 'b', 'c'))
    with pytest.raises(ValueError, match=r'bad_map\.png: label values \[7\] are outside the 3 '
                       r'classes \(0\.\.2\) and are not the ignore index 255'):
        checked.process({}, [sample(pred, label, 'bad_map.png')])


def test_ade20k_map_out_of_range_after_reduce_zero_label(tmp_path, mini_config, ade_root):
    """An ADE20K-layout map with the value 200 (149 is the last class after
    reduce_zero_label): the config's evaluator stops with the file's name."""
    bad = ade_root / 'annotations' / 'validation' / 'ADE_valid_00000001.png'
    label = np.array(Image.open(bad))
    label[10:20, 10:20] = 200
    Image.fromarray(label).save(bad)
    cfg = Config.fromfile(mini_config)
    init_default_scope('mmseg')
    dataset = DATASETS.build(cfg.val_dataloader.dataset)
    metric = METRICS.build(cfg.val_evaluator)
    metric.dataset_meta = dataset.metainfo
    for i in range(len(dataset)):
        data = dataset[i]['data_samples']
        data.pred_sem_seg = PixelData(data=torch.zeros_like(data.gt_sem_seg.data))
        if data.seg_map_path.endswith('ADE_valid_00000001.png'):
            with pytest.raises(ValueError, match=r'ADE_valid_00000001\.png: label values '
                               r'\[199\] are outside the 150 classes'):
                metric.process({}, [data.to_dict()])
        else:
            metric.process({}, [data.to_dict()])  # a valid map passes
