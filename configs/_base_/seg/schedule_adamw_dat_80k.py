# The DAT segmentation schedule (see schedule_adamw_dat_160k.py) over 80k iterations, with
# mmseg's 80k loop settings (validation and checkpoints every 8k iterations).
_base_ = ['./schedule_adamw_dat_160k.py']

param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0., power=1.0, by_epoch=False, begin=1500, end=80000),
]
train_cfg = dict(max_iters=80000, val_interval=8000)
default_hooks = dict(checkpoint=dict(interval=8000))
