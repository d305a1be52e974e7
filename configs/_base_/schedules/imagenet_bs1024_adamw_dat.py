# The 2022 DAT recipe for 300 epochs at a total batch of 1024 (8 GPUs x 128):
# AdamW (0.9, 0.999), eps 1e-8, weight decay 0.05 with none on norms, biases and position
# tables; lr 5e-4 per 512 images, 20 warm-up epochs from 5e-7 per 512, cosine to 5e-6
# per 512; gradient-norm clipping at 5; AMP.
_base_ = ['mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py']

optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(lr=5e-4 * 1024 / 512),
    paramwise_cfg=dict(
        custom_keys={
            '.relative_position_bias_table': dict(decay_mult=0.0),
            '.rpe_table': dict(decay_mult=0.0),
        }),
    clip_grad=dict(max_norm=5.0),
)
