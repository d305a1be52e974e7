# DAT-S++ on ImageNet-1k: the recipe of datpp-tiny_8xb128-amp_in1k.py with drop path 0.4
# (the DAT++ release's configs/dat_small.yaml).
_base_ = ['../_base_/models/datpp-small.py', '../_base_/datasets/imagenet_bs128_dat_224.py',
          '../_base_/schedules/imagenet_bs1024_adamw_dat.py', '../_base_/default_runtime.py']
