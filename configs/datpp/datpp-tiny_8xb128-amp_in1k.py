# DAT-T++ on ImageNet-1k, the DAT++ release's recipe (configs/dat_tiny.yaml of
# LeapLabTHU/DAT, with config.py's defaults and train.sh's --amp): 300 epochs with 20 of
# warm-up, total batch 1024 (8 GPUs x 128), AdamW lr 5e-4 / warm-up 5e-7 / min 5e-6 per
# 512 images, weight decay 0.05, gradient clipping 5.0, drop path 0.2. That is the 2022
# DAT-T/S schedule, so the schedule base is shared.
_base_ = ['../_base_/models/datpp-tiny.py', '../_base_/datasets/imagenet_bs128_dat_224.py',
          '../_base_/schedules/imagenet_bs1024_adamw_dat.py', '../_base_/default_runtime.py']
