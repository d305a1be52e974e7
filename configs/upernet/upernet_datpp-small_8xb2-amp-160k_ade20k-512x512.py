# DAT-S++ UperNet on ADE20K: the authors' configs/dat/upn_small_160k_dp05_lr6.py
# (LeapLabTHU/DAT-Segmentation, mmseg 0.29), trained with mixed precision as there.
_base_ = '../_base_/seg/upernet_datpp.py'
model = dict(
    backbone=dict(arch='small', drop_path_rate=0.5,
                  init_cfg=dict(checkpoint='checkpoints/datpp-small_in1k_224.pth')),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))
# AMP as the release trains (fp16 autocast, torch's GradScaler() with dynamic scaling:
# AmpOptimWrapper's default loss_scale). Nothing AMP-only is set, so on a CPU the upstream
# tools/train.py of mmpretrain, mmdet and mmseg run it in fp32 with
# `--cfg-options optim_wrapper.type=OptimWrapper` (ours switches by itself; docs/upstream_tools.md).
optim_wrapper = dict(type='AmpOptimWrapper')
