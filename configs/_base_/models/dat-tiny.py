# DAT-T, the 2022 release's dat_tiny (LeapLabTHU/DAT, configs/dat_tiny.yaml), as an
# ImageNet-1k classifier. Detection and segmentation configs put DAT into their library's
# models themselves (configs/_base_/det, configs/_base_/seg).
_base_ = ['./classifier_in1k.py']

model = dict(
    backbone=dict(type='DAT', arch='tiny', img_size=224, window_size=7, drop_path_rate=0.2,
                  out_indices=(3, ),
                  attn_impl='auto'),  # or 'reference', 'sdpa': see DAT's docstring
    head=dict(in_channels=768))
