# Segmentation schedule of DAT (UperNet, 160k iterations, 8 GPUs x 2 images): AdamW
# lr 6e-5, weight decay 0.01 except on norms and position tables, 1500 linear warm-up
# iterations, then poly decay with power 1.0; mixed precision (tools/train.py turns AMP off
# on the CPU). Inherits mmseg's 160k loop, hooks and checkpoint interval.
_base_ = ['mmseg::_base_/schedules/schedule_160k.py']

optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(
        norm_decay_mult=0.,
        custom_keys={
            '.relative_position_bias_table': dict(decay_mult=0.),
            '.rpe_table': dict(decay_mult=0.),
        }))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0., power=1.0, by_epoch=False, begin=1500, end=160000),
]
# mmseg's checkpoint settings, with writes that a kill cannot break (dat/engine).
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))
