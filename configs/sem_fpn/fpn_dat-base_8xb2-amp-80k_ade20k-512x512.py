_base_ = '../_base_/seg/fpn_dat.py'
model = dict(
    backbone=dict(arch='base', drop_path_rate=0.5,
                  init_cfg=dict(checkpoint='checkpoints/dat-base_in1k.pth')),
    neck=dict(in_channels=[128, 256, 512, 1024]))
