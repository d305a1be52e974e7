_base_ = ['../_base_/models/dat-base.py', '../_base_/datasets/imagenet_bs128_dat_224.py',
          '../_base_/schedules/imagenet_bs1024_adamw_dat.py', '../_base_/default_runtime.py']

# DAT-B: lr 4e-4 per 512 images, 50 warm-up epochs and gradient-norm clipping at 1.0
# (DAT-T/S: 5e-4, 20 and 5.0), as configs/dat_base.yaml of the 2022 release
# (LeapLabTHU/DAT) sets BASE_LR, WARMUP_EPOCHS and CLIP_GRAD.
base_lr = 4e-4
warmup_epochs = 50
optim_wrapper = dict(optimizer=dict(lr=base_lr * _base_.total_batch / 512),
                     clip_grad=dict(max_norm=1.0))
# the 2022 warm-up and cosine schedule, with DAT-B's warm-up length and peak lr
param_scheduler = [
    dict(_base_.param_scheduler[0], start_factor=_base_.warmup_lr / base_lr, end=warmup_epochs),
    dict(_base_.param_scheduler[1], begin=warmup_epochs),
]
