# DAT-B at 384 px (window 12): 30 epochs of fine-tuning from the 224 px DAT-B, total
# batch 192 (8 GPUs x 24). lr 2e-6 and min lr 1e-7 per 512 images, weight decay 1e-8,
# no warm-up, cosine decay, drop-path 0.5; augmentation as at 224 px.
# The D blocks' position tables (rpe_table) are resized from 224 to 384 px on load.
_base_ = [
    'mmpretrain::_base_/models/swin_transformer/tiny_224.py',
    '../_base_/models/dat-base.py',
    '../_base_/datasets/imagenet_bs24_dat_384.py',
    '../_base_/schedules/imagenet_bs1024_adamw_dat.py',
    '../_base_/default_runtime.py',
]
custom_imports = dict(imports=['dat.adapters.mmpretrain'], allow_failed_imports=False)

model = dict(
    backbone=dict(_base_.backbone, img_size=384, window_size=12, drop_path_rate=0.5),
    head=dict(in_channels=1024),
    init_cfg=None)

# The DAT-B (224 px) checkpoint to fine-tune, e.g. the converted 2022 release or your own
# run; override with `--cfg-options load_from=PATH`.
load_from = 'work_dirs/dat-base_8xb128_in1k/epoch_300.pth'

total_batch = 8 * 24
max_epochs = 30
optim_wrapper = dict(optimizer=dict(lr=2e-6 * total_batch / 512, weight_decay=1e-8))
param_scheduler = [
    dict(
        type='CosineAnnealingLR',
        eta_min=1e-7 * total_batch / 512,
        by_epoch=True,
        begin=0,
        end=max_epochs,
        convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs)
auto_scale_lr = dict(base_batch_size=total_batch)
