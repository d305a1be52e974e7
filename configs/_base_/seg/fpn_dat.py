# Semantic FPN (mmseg's R-50 model) on DAT-T, as in the paper: no auxiliary head (the
# parameter counts match only without it). ADE20K 512 x 512 crops, the DAT schedule over 80k
# iterations at 8 GPUs x 2 images, mixed precision; initialised as in upernet_dat.py. The
# configs in configs/sem_fpn set the arch, drop path, checkpoint and channels of DAT-S/B.
_base_ = ['mmseg::_base_/models/fpn_r50.py', '../datasets/ade20k_dat.py',
          './default_runtime.py', './schedule_adamw_dat_80k.py']

crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(size=crop_size),
    pretrained=None,
    backbone=dict(
        _delete_=True, type='DAT', arch='tiny', img_size=224, window_size=7,
        drop_path_rate=0.2, out_indices=(0, 1, 2, 3), attn_impl='auto',
        init_cfg=dict(type='Pretrained', prefix='backbone.',
                      checkpoint='checkpoints/dat-tiny_in1k.pth')),
    neck=dict(in_channels=[96, 192, 384, 768]),
    decode_head=dict(num_classes=150))
train_dataloader = dict(batch_size=2)
# AMP as the release trains (fp16 autocast, torch's GradScaler() with dynamic scaling:
# AmpOptimWrapper's default loss_scale). Nothing AMP-only is set, so on a CPU the upstream
# tools/train.py of mmpretrain, mmdet and mmseg run it in fp32 with
# `--cfg-options optim_wrapper.type=OptimWrapper` (ours switches by itself; docs/upstream_tools.md).
optim_wrapper = dict(type='AmpOptimWrapper')
