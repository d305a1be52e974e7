# DAT-T++, the DAT++ release's configs/dat_tiny.yaml, as an ImageNet-1k classifier.
# Detection and segmentation configs put DAT++ into their library's models themselves
# (configs/_base_/det, configs/_base_/seg), with their own drop path.
_base_ = ['./classifier_in1k.py']

model = dict(
    backbone=dict(type='DATPlusPlus', arch='tiny', img_size=224, drop_path_rate=0.2,
                  out_indices=(3, ), attn_impl='auto'),
    head=dict(in_channels=512))
