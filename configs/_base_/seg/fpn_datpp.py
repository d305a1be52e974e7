# Semantic FPN (mmseg's R-50 model, no auxiliary head) on DAT-T++, as the DAT++ release
# (LeapLabTHU/DAT-Segmentation, configs/dat/fpn_*_80k_*.py, mmseg 0.29), which calls it 80k:
# 40k iterations at 8 GPUs x 4 images (see schedule_adamw_datpp_fpn_40k.py), fp32;
# initialised as in upernet_datpp.py. The configs in configs/sem_fpn set the drop path of the
# release's config (and the arch, checkpoint and channels of DAT-S++ and DAT-B++).
_base_ = ['mmseg::_base_/models/fpn_r50.py', '../datasets/ade20k_dat.py',
          './default_runtime.py', './schedule_adamw_datpp_fpn_40k.py']

crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(size=crop_size),
    pretrained=None,
    backbone=dict(
        _delete_=True, type='DATPlusPlus', arch='tiny', img_size=224, drop_path_rate=0.4,
        out_indices=(0, 1, 2, 3), attn_impl='auto',
        with_cp=False,  # as use_checkpoint=False in the release's configs/_base_/models/fpn_dat.py
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/datpp-tiny_in1k_224.pth',
                      prefix='backbone.')),
    neck=dict(in_channels=[64, 128, 256, 512]),
    decode_head=dict(num_classes=150))
train_dataloader = dict(batch_size=4)
