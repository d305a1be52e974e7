# Multi-scale training with the DETR-style crop, used by the 3x recipes (as mmdet's Swin
# and ConvNeXt 3x configs): with probability 1/2 resize the short side to one of 480..800;
# otherwise resize to 400/500/600, crop a random 384..600 patch, then resize to 480..800.
# Imported by coco_{detection,instance}_ms-crop.py as `_base_.ms_crop_aug`.
_scales = [(480, 1333), (512, 1333), (544, 1333), (576, 1333), (608, 1333), (640, 1333),
           (672, 1333), (704, 1333), (736, 1333), (768, 1333), (800, 1333)]
ms_crop_aug = dict(
    type='RandomChoice',
    transforms=[
        [dict(type='RandomChoiceResize', scales=_scales, keep_ratio=True)],
        [
            dict(type='RandomChoiceResize', scales=[(400, 1333), (500, 1333), (600, 1333)],
                 keep_ratio=True),
            dict(type='RandomCrop', crop_type='absolute_range', crop_size=(384, 600),
                 allow_negative_crop=True),
            dict(type='RandomChoiceResize', scales=_scales, keep_ratio=True),
        ],
    ])
