# UperNet (mmseg's model of its Swin configs: UPerHead, and an FCN auxiliary head on stage 2)
# on DAT-T, trained on ADE20K 512 x 512 crops with the DAT schedule: 160k iterations at
# 8 GPUs x 2 images, mixed precision. The backbone starts from the ImageNet checkpoint
# converted with tools/model_converters/dat2mmpretrain.py (see configs/upernet/README.md).
# The configs in configs/upernet set the arch, drop path, checkpoint and channels of DAT-S/B.
_base_ = ['mmseg::_base_/models/upernet_swin.py', '../datasets/ade20k_dat.py',
          './default_runtime.py', './schedule_adamw_dat_160k.py']

crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        _delete_=True, type='DAT', arch='tiny', img_size=224, window_size=7, drop_path_rate=0.2,
        out_indices=(0, 1, 2, 3), attn_impl='auto',
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/dat-tiny_in1k.pth',
                      prefix='backbone.')),
    decode_head=dict(in_channels=[96, 192, 384, 768], num_classes=150),
    auxiliary_head=dict(in_channels=384, num_classes=150))
train_dataloader = dict(batch_size=2)
# AMP as the release trains (fp16 autocast, torch's GradScaler() with dynamic scaling:
# AmpOptimWrapper's default loss_scale). Nothing AMP-only is set, so on a CPU the upstream
# tools/train.py of mmpretrain, mmdet and mmseg run it in fp32 with
# `--cfg-options optim_wrapper.type=OptimWrapper` (ours switches by itself; docs/upstream_tools.md).
optim_wrapper = dict(type='AmpOptimWrapper')
