# COCO detection (boxes) with the 3x multi-scale + crop augmentation.
_base_ = ['mmdet::_base_/datasets/coco_detection.py', './ms_crop_aug.py']

train_pipeline = [
    dict(type='CheckedLoadImageFromFile', backend_args=_base_.backend_args),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomFlip', prob=0.5),
    _base_.ms_crop_aug,
    dict(type='PackDetInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
