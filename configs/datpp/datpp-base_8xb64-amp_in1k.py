# DAT-B++ on ImageNet-1k, the DAT++ release's recipe (configs/dat_base.yaml of
# LeapLabTHU/DAT, with config.py's defaults and train.sh's --amp): 300 epochs with 20 of
# warm-up, total batch 512 (8 GPUs x 64), AdamW lr 5e-4 / warm-up 5e-7 / min 5e-6 per
# 512 images, weight decay 0.05, gradient clipping 5.0, drop path 0.7.
_base_ = ['../_base_/models/datpp-base.py', '../_base_/datasets/imagenet_bs128_dat_224.py',
          '../_base_/schedules/imagenet_bs1024_adamw_dat.py', '../_base_/default_runtime.py']

total_batch = 8 * 64
train_dataloader = dict(batch_size=64)
optim_wrapper = dict(optimizer=dict(lr=_base_.base_lr * total_batch / 512))
# the minimum lr of the cosine decay scales with the batch, as the peak lr does
param_scheduler = [
    _base_.param_scheduler[0],
    dict(_base_.param_scheduler[1], eta_min=_base_.min_lr * total_batch / 512),
]
auto_scale_lr = dict(base_batch_size=total_batch)
