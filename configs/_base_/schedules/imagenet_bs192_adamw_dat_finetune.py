# Fine-tuning at a higher resolution, as the 2022 release does for DAT-B-384
# (LeapLabTHU/DAT, configs/dat_base_384.yaml): 30 epochs at a total batch of 192 (8 GPUs x
# 24), lr 2e-6 and min lr 1e-7 per 512 images, no warm-up, cosine decay, weight decay 1e-8;
# otherwise the recipe of imagenet_bs1024_adamw_dat.py. DAT-B++-384 changes the lrs.
_base_ = ['./imagenet_bs1024_adamw_dat.py']

total_batch = 8 * 24
max_epochs = 30
optim_wrapper = dict(optimizer=dict(lr=2e-6 * total_batch / 512, weight_decay=1e-8))
param_scheduler = [
    dict(type='CosineAnnealingLR', eta_min=1e-7 * total_batch / 512, by_epoch=True, begin=0,
         end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs)
auto_scale_lr = dict(base_batch_size=total_batch)
