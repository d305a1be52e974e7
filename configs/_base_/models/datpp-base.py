# DAT-B++, the DAT++ release's configs/dat_base.yaml (drop path 0.7).
_base_ = ['./datpp-tiny.py']

model = dict(backbone=dict(arch='base', drop_path_rate=0.7), head=dict(in_channels=1024))
