# DAT-B++ Semantic FPN on ADE20K: the authors' configs/dat/fpn_base_80k_dp07_lr2.py
# (LeapLabTHU/DAT-Segmentation, mmseg 0.29).
_base_ = '../_base_/seg/fpn_datpp.py'
model = dict(
    backbone=dict(arch='base', drop_path_rate=0.7,
                  init_cfg=dict(checkpoint='checkpoints/datpp-base_in1k_224.pth')),
    neck=dict(in_channels=[128, 256, 512, 1024]))
