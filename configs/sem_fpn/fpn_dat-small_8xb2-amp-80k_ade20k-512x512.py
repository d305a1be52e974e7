_base_ = '../_base_/seg/fpn_dat.py'
model = dict(
    backbone=dict(arch='small', drop_path_rate=0.3,
                  init_cfg=dict(checkpoint='checkpoints/dat-small_in1k.pth')))
