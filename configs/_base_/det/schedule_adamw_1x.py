# The DAT detection optimizer and mmdet's 1x schedule: AdamW with lr 1e-4 for a total batch
# of 16 images (8 GPUs x 2), weight decay 0.05 with none on norms and on the backbone's
# position tables (its no_weight_decay_keywords, see dat/engine/optim.py); 12 epochs, lr x0.1
# after epochs 8 and 11, 500 linear warm-up iterations. fp32; schedule_adamw_amp-1x.py is
# this with mixed precision. With another total batch, scale the lr (--auto-scale-lr,
# base_batch_size=16).
_base_ = 'mmdet::_base_/schedules/schedule_1x.py'

optim_wrapper = dict(
    constructor='NoDecayKeywordsConstructor',
    optimizer=dict(
        _delete_=True, type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0))
