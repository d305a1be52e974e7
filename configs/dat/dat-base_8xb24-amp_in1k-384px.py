# DAT-B at 384 px (window 12): 30 epochs of fine-tuning from the 224 px DAT-B, total
# batch 192 (8 GPUs x 24). lr 2e-6 and min lr 1e-7 per 512 images, weight decay 1e-8,
# no warm-up, cosine decay (imagenet_bs192_adamw_dat_finetune.py), drop path 0.5;
# augmentation as at 224 px.
# The D blocks' position tables (rpe_table) are resized from 224 to 384 px on load.
_base_ = ['../_base_/models/dat-base.py', '../_base_/datasets/imagenet_bs24_dat_384.py',
          '../_base_/schedules/imagenet_bs192_adamw_dat_finetune.py', '../_base_/default_runtime.py']

model = dict(backbone=dict(img_size=384, window_size=12))

# The DAT-B (224 px) checkpoint to fine-tune, e.g. the converted 2022 release or your own
# run; override with `--cfg-options load_from=PATH`.
load_from = 'work_dirs/dat-base_8xb128-amp_in1k/epoch_300.pth'
