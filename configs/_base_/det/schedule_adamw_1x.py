# The DAT detection recipe, 1x: AdamW with lr 1e-4 for a total batch of 16 images
# (8 GPUs x 2), weight decay 0.05 with none on norms and on the position tables, AMP;
# 12 epochs, lr x0.1 after epochs 8 and 11, 500 linear warm-up iterations (mmdet's 1x).
# With another total batch, scale the lr (--auto-scale-lr, base_batch_size=16).
_base_ = 'mmdet::_base_/schedules/schedule_1x.py'

optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(
        _delete_=True, type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        custom_keys={
            '.relative_position_bias_table': dict(decay_mult=0.0),
            '.rpe_table': dict(decay_mult=0.0),
        }))
