# mmdet's COCO detection data (1x recipes), loading with CheckedLoadImageFromFile: an
# unreadable image is an error that names the file (docs/faults.md). Registered by
# dat.adapters.mmdet, which the detection runtime (default_runtime.py) imports.
_base_ = ['mmdet::_base_/datasets/coco_detection.py']

train_dataloader = dict(dataset=dict(
    pipeline=[dict(type='CheckedLoadImageFromFile', backend_args=_base_.backend_args)]
    + _base_.train_pipeline[1:]))
val_dataloader = dict(dataset=dict(
    pipeline=[dict(type='CheckedLoadImageFromFile', backend_args=_base_.backend_args)]
    + _base_.test_pipeline[1:]))
test_dataloader = val_dataloader
