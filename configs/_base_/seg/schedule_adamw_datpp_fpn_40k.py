# DAT++ Semantic FPN schedule (LeapLabTHU/DAT-Segmentation, configs/dat/fpn_*_80k_*.py):
# AdamW lr 2e-4, weight decay 1e-4 (none on 'norm' parameters and the position tables),
# poly decay with power 0.9 to 0 without warm-up, fp32, 40k iterations at 8 GPUs x 4 images.
# The release calls it 80k: it halves mmseg's 80k iterations at 4 GPUs x 4 images and doubles
# the lr. Validation and checkpoints every 4k iterations.
_base_ = ['mmseg::_base_/schedules/schedule_40k.py']

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='NoDecayKeywordsConstructor',
    optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=1e-4),
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.)}))
param_scheduler = [
    dict(type='PolyLR', eta_min=0., power=0.9, by_epoch=False, begin=0, end=40000),
]
# mmseg's checkpoint settings, with writes that a kill cannot break (dat/engine).
default_hooks = dict(
    checkpoint=dict(type='AtomicCheckpointHook'),
    # stop at the first NaN/inf loss or gradient (max_skips=N: skip N such steps first)
    nonfinite=dict(type='NonFiniteCheckHook'))
