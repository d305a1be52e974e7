_base_ = ['./dat-base_8xb128_in1k.py']

model = dict(backbone=dict(img_size=384, window_size=12))
