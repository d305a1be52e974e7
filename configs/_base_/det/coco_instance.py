# mmdet's COCO instance data (1x recipes), loading with CheckedLoadImageFromFile: an
# unreadable training image is an error that names the file (docs/faults.md). Registered by
# dat.adapters.mmdet, which the detection runtime (default_runtime.py) imports. The test
# pipeline keeps mmcv's LoadImageFromFile, which DetInferencer looks up by name; our
# tools/test.py and tools/train.py swap in CheckedLoadImageFromFile.
_base_ = ['mmdet::_base_/datasets/coco_instance.py']

train_dataloader = dict(dataset=dict(
    pipeline=[dict(type='CheckedLoadImageFromFile', backend_args=_base_.backend_args)]
    + _base_.train_pipeline[1:]))
