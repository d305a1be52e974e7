# DAT++ UperNet schedule (LeapLabTHU/DAT-Segmentation, configs/dat/upn_*_160k_*.py): that
# of schedule_adamw_dat_160k.py (AdamW lr 6e-5, weight decay 0.01, 1500 linear warm-up
# iterations from 1e-6, then poly decay with power 1.0, 160k iterations at 8 GPUs x 2
# images), with the release's weight-decay rule: none on parameters whose name contains
# 'norm' (the backbone's LayerNorms) and on the position tables; the heads' SyncBN layers
# are decayed.
_base_ = ['./schedule_adamw_dat_160k.py']

optim_wrapper = dict(paramwise_cfg=dict(_delete_=True, custom_keys={'norm': dict(decay_mult=0.)}))
