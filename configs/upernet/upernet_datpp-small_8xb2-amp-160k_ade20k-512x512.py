# DAT-S++ UperNet on ADE20K: the authors' configs/dat/upn_small_160k_dp05_lr6.py
# (LeapLabTHU/DAT-Segmentation, mmseg 0.29), trained with mixed precision as there.
_base_ = '../_base_/seg/upernet_datpp.py'
model = dict(
    backbone=dict(arch='small', drop_path_rate=0.5,
                  init_cfg=dict(checkpoint='checkpoints/datpp-small_in1k_224.pth')),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))
optim_wrapper = dict(type='AmpOptimWrapper', loss_scale='dynamic')
