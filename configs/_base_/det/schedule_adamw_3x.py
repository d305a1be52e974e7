# The DAT detection optimizer and the 3x schedule: as schedule_adamw_1x.py, for 36 epochs with
# lr x0.1 after epochs 27 and 33. fp32; schedule_adamw_amp-3x.py is this with mixed precision.
_base_ = './schedule_adamw_1x.py'

max_epochs = 36
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[27, 33],
         gamma=0.1),
]
