# DAT-S++, the DAT++ release's configs/dat_small.yaml (drop path 0.4).
_base_ = ['./datpp-tiny.py']

model = dict(backbone=dict(arch='small', drop_path_rate=0.4), head=dict(in_channels=768))
