# DAT-B++ at 384 px: 30 epochs of fine-tuning from the 224 px DAT-B++ (the DAT++ release's
# configs/dat_base_384.yaml): total batch 192 (8 GPUs x 24), lr 2e-5 and min lr 2e-7 per
# 512 images, no warm-up, cosine decay, weight decay 1e-8, drop path 0.6; augmentation as
# at 224 px; testing resizes to 384 x 384 without a crop.
# The model keeps img_size=224, as the release does: its D blocks' position tables are
# those of 224 px (so a 224 px checkpoint loads unchanged) and it runs at 384 px.
_base_ = [
    'mmpretrain::_base_/models/swin_transformer/tiny_224.py',
    '../_base_/models/datpp-base.py',
    '../_base_/datasets/imagenet_bs24_datpp_384.py',
    '../_base_/schedules/imagenet_bs1024_adamw_dat.py',
    '../_base_/default_runtime.py',
]
custom_imports = dict(imports=['dat.adapters.mmpretrain'], allow_failed_imports=False)

model = dict(
    backbone=dict(_base_.backbone, drop_path_rate=0.6),
    head=dict(in_channels=1024),
    init_cfg=None)

# The DAT-B++ (224 px) checkpoint to fine-tune, e.g. the converted release or your own
# run; override with `--cfg-options load_from=PATH`.
load_from = 'work_dirs/datpp-base_8xb64_in1k/epoch_300.pth'

total_batch = 8 * 24
max_epochs = 30
optim_wrapper = dict(optimizer=dict(lr=2e-5 * total_batch / 512, weight_decay=1e-8))
param_scheduler = [
    dict(
        type='CosineAnnealingLR',
        eta_min=2e-7 * total_batch / 512,
        by_epoch=True,
        begin=0,
        end=max_epochs,
        convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs)
auto_scale_lr = dict(base_batch_size=total_batch)
