# The 2022 DAT recipe, 300 epochs at a total batch of 1024 (8 GPUs x 128), for DAT-T/S:
#   AdamW, betas (0.9, 0.999), eps 1e-8, weight decay 0.05, none on norms, biases
#   (all 1-d parameters) and the position tables that the backbone names
#   (no_weight_decay_keywords: relative_position_bias_table, rpe_table; see
#   dat/engine/optim.py); lr 5e-4 per 512 images; 20 warm-up epochs from 5e-7 per 512
#   (start_factor 1e-3); cosine to 5e-6 per 512; gradient-norm clipping at 5.0 (DAT-B at
#   224 px: 1.0); AMP.
# Both lr and warm-up/min lr are per-iteration, as in the 2022 code. DAT-B overrides
# lr, warm-up, the cosine start and the clipping (configs/dat/dat-base_8xb128-amp_in1k.py).
# `--auto-scale-lr` rescales the optimizer lr to another total batch; the scheduler's
# eta_min is absolute, so rescale it by hand too (see configs/dat/README.md).
base_lr = 5e-4  # per 512 images
warmup_lr = 5e-7  # per 512 images
min_lr = 5e-6  # per 512 images
warmup_epochs = 20
max_epochs = 300
total_batch = 1024

# AMP as the release trains (fp16 autocast, torch's GradScaler() with dynamic scaling:
# AmpOptimWrapper's default loss_scale). Nothing AMP-only is set, so on a CPU the upstream
# tools/train.py of mmpretrain, mmdet and mmseg run it in fp32 with
# `--cfg-options optim_wrapper.type=OptimWrapper` (ours switches by itself; docs/upstream_tools.md).
optim_wrapper = dict(
    type='AmpOptimWrapper',
    constructor='NoDecayKeywordsConstructor',
    optimizer=dict(
        type='AdamW',
        lr=base_lr * total_batch / 512,
        weight_decay=0.05,
        eps=1e-8,
        betas=(0.9, 0.999)),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0),
    clip_grad=dict(max_norm=5.0),
)

param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=warmup_lr / base_lr,
        by_epoch=True,
        begin=0,
        end=warmup_epochs,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        eta_min=min_lr * total_batch / 512,
        by_epoch=True,
        begin=warmup_epochs,
        end=max_epochs,
        convert_to_iter_based=True),
]

train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=total_batch)
