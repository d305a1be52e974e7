# DAT-S++ Semantic FPN on ADE20K: the authors' configs/dat/fpn_small_80k_dp04_lr2.py
# (LeapLabTHU/DAT-Segmentation, mmseg 0.29).
_base_ = '../_base_/seg/fpn_datpp.py'
model = dict(
    backbone=dict(arch='small', drop_path_rate=0.4,
                  init_cfg=dict(checkpoint='checkpoints/datpp-small_in1k_224.pth')),
    neck=dict(in_channels=[96, 192, 384, 768]))
