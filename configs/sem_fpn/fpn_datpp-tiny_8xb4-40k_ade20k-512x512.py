# DAT-T++ Semantic FPN on ADE20K: the authors' configs/dat/fpn_tiny_80k_dp04_lr2.py
# (LeapLabTHU/DAT-Segmentation, mmseg 0.29).
_base_ = '../_base_/seg/fpn_datpp.py'
model = dict(backbone=dict(drop_path_rate=0.4))
