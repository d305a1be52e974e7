# DAT-B++ UperNet on ADE20K: the authors' configs/dat/upn_base_160k_dp07_lr6.py
# (LeapLabTHU/DAT-Segmentation, mmseg 0.29), trained in fp32 as there (no Fp16OptimizerHook).
_base_ = '../_base_/seg/upernet_datpp.py'
model = dict(
    backbone=dict(arch='base', drop_path_rate=0.7,
                  init_cfg=dict(checkpoint='checkpoints/datpp-base_in1k_224.pth')),
    decode_head=dict(in_channels=[128, 256, 512, 1024]),
    auxiliary_head=dict(in_channels=512))
