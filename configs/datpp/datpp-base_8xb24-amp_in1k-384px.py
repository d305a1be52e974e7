# DAT-B++ at 384 px: 30 epochs of fine-tuning from the 224 px DAT-B++ (the DAT++ release's
# configs/dat_base_384.yaml): total batch 192 (8 GPUs x 24), lr 2e-5 and min lr 2e-7 per
# 512 images, no warm-up, cosine decay, weight decay 1e-8, drop path 0.6; augmentation as
# at 224 px; testing resizes to 384 x 384 without a crop.
# The model keeps img_size=224, as the release does: its D blocks' position tables are
# those of 224 px (so a 224 px checkpoint loads unchanged) and it runs at 384 px.
_base_ = ['../_base_/models/datpp-base.py', '../_base_/datasets/imagenet_bs24_datpp_384.py',
          '../_base_/schedules/imagenet_bs192_adamw_dat_finetune.py', '../_base_/default_runtime.py']

model = dict(backbone=dict(drop_path_rate=0.6))

# The DAT-B++ (224 px) checkpoint to fine-tune, e.g. the converted release or your own
# run; override with `--cfg-options load_from=PATH`.
load_from = 'work_dirs/datpp-base_8xb64-amp_in1k/epoch_300.pth'

optim_wrapper = dict(optimizer=dict(lr=2e-5 * _base_.total_batch / 512))
param_scheduler = [dict(_base_.param_scheduler[0], eta_min=2e-7 * _base_.total_batch / 512)]
