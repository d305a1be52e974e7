# mmseg's ADE20K settings (512x512 crops, reduce_zero_label, the multi-scale flip
# `tta_pipeline` with ratios 0.5..1.75), evaluated with CheckedIoUMetric: mmseg's
# IoUMetric, except that label values outside the 150 classes (other than the ignore
# index 255) raise an error instead of silently skewing mIoU. The metric is registered by
# dat.adapters.mmseg, which the segmentation runtime (../seg/default_runtime.py) imports.
_base_ = ['mmseg::_base_/datasets/ade20k.py']

val_evaluator = dict(type='CheckedIoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

# mmseg's train pipeline, loading with CheckedLoadImageFromFile: an unreadable image is an
# error that names the file (docs/faults.md). The test pipeline keeps mmcv's LoadImageFromFile,
# which MMSegInferencer looks up by name; our tools/test.py and tools/train.py swap in
# CheckedLoadImageFromFile.
train_dataloader = dict(dataset=dict(
    pipeline=[dict(type='CheckedLoadImageFromFile')] + _base_.train_pipeline[1:]))
