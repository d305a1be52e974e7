# DAT-S, the 2022 release's dat_small (configs/dat_small.yaml): DAT-T with 18 blocks in
# stage 2 and drop path 0.3.
_base_ = ['./dat-tiny.py']

model = dict(backbone=dict(arch='small', drop_path_rate=0.3))
