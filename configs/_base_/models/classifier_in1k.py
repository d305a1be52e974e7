# An ImageNet-1k classifier as the DAT and DAT++ releases train it, without its backbone:
# global average pooling, a linear head, label smoothing 0.1 and, per training batch,
# Mixup (alpha 0.8) or CutMix (alpha 1.0). Both releases initialise with PyTorch's defaults,
# so there is no init_cfg. dat-*.py and datpp-*.py add the backbone and the head's width.
model = dict(
    type='ImageClassifier',
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        init_cfg=None,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        cal_acc=False),
    init_cfg=None,
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]))
