# The DAT segmentation schedule (UperNet, 160k iterations, 8 GPUs x 2 images): AdamW
# lr 6e-5, weight decay 0.01 except on norms and on the backbone's position tables (its
# no_weight_decay_keywords, see dat/engine/optim.py), 1500 linear warm-up iterations, then
# poly decay with power 1.0; fp32 here, the DAT recipes add mixed precision (tools/train.py
# turns it off on the CPU). Inherits mmseg's 160k loop, hooks and checkpoint interval.
_base_ = ['mmseg::_base_/schedules/schedule_160k.py']

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='NoDecayKeywordsConstructor',
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(norm_decay_mult=0.))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0., power=1.0, by_epoch=False, begin=1500, end=160000),
]
# mmseg's checkpoint settings, with writes that a kill cannot break (dat/engine).
default_hooks = dict(
    checkpoint=dict(type='AtomicCheckpointHook'),
    # stop at the first NaN/inf loss or gradient (max_skips=N: skip N such steps first)
    nonfinite=dict(type='NonFiniteCheckHook'))
