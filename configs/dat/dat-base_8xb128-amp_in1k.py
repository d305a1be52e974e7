_base_ = ['../_base_/models/dat-base.py', '../_base_/datasets/imagenet_bs128_dat_224.py',
          '../_base_/schedules/imagenet_bs1024_adamw_dat.py', '../_base_/default_runtime.py']

# DAT-B: lr 4e-4 per 512 images, 50 warm-up epochs and gradient-norm clipping at 1.0
# (DAT-T/S: 5e-4, 20 and 5.0), as configs/dat_base.yaml of the 2022 release
# (LeapLabTHU/DAT) sets BASE_LR, WARMUP_EPOCHS and CLIP_GRAD.
base_lr = 4e-4
warmup_epochs = 50
optim_wrapper = dict(optimizer=dict(lr=base_lr * _base_.total_batch / 512),
                     clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=_base_.warmup_lr / base_lr,
        by_epoch=True,
        begin=0,
        end=warmup_epochs,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        eta_min=_base_.min_lr * _base_.total_batch / 512,
        by_epoch=True,
        begin=warmup_epochs,
        end=_base_.max_epochs,
        convert_to_iter_based=True),
]
