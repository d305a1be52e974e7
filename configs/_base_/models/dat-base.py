# DAT-B, the 2022 release's dat_base (configs/dat_base.yaml): wider than DAT-S (128 to
# 1024 channels), drop path 0.5.
_base_ = ['./dat-tiny.py']

model = dict(backbone=dict(arch='base', drop_path_rate=0.5), head=dict(in_channels=1024))
