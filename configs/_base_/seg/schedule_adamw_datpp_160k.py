# DAT++ UperNet schedule (LeapLabTHU/DAT-Segmentation@fdd2039, configs/dat/upn_*_160k_*.py):
# that of schedule_adamw_dat_160k.py (AdamW lr 6e-5, weight decay 0.01, 160k iterations at
# 8 GPUs x 2 images: "By default, models are trained on 8 GPUs with 2 images per GPU" there),
# with the release's weight-decay rule: none on parameters whose name contains 'norm' (the
# backbone's LayerNorms) and on the position tables; the heads' SyncBN layers are decayed.
# The lr as the release's mmcv 'poly' policy with a linear warm-up (lr_config there): the
# poly decay (power 1.0, to 0) counts from iteration 0 and the warm-up factor (from 1e-6 to 1
# over 1500 iterations) multiplies it. mmengine's schedulers compose where their ranges
# overlap, so a LinearLR and a PolyLR that both begin at 0 give exactly that; their ends are
# one past mmcv's (mmengine reaches the end factor at end - 1): 1501 and 160001.
_base_ = ['./schedule_adamw_dat_160k.py']

optim_wrapper = dict(paramwise_cfg=dict(_delete_=True, custom_keys={'norm': dict(decay_mult=0.)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1501),
    dict(type='PolyLR', eta_min=0., power=1.0, by_epoch=False, begin=0, end=160001),
]
