# DAT-S++ Mask R-CNN, 1x with the multi-scale + crop augmentation:
# the authors' configs/dat/mrcn_small_1x_4n_dp01_lr4.py (LeapLabTHU/DAT-Detection, mmdet 2.26).
# They train on 4 nodes x 8 GPUs x 2 images (64 images) with lr 4e-4;
# here 8 GPUs x 2 images with the lr scaled linearly (--auto-scale-lr from 16).
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    '../_base_/det/coco_instance_ms-crop.py',
    '../_base_/det/schedule_adamw_1x.py',
    '../_base_/det/default_runtime.py',
    '../_base_/models/datpp-small.py',
]
# The backbone starts from an ImageNet checkpoint converted with
# tools/model_converters/datpp2mmpretrain.py (see configs/datpp/README.md).
model = dict(
    backbone=dict(_base_.backbone, drop_path_rate=0.1, out_indices=(0, 1, 2, 3),
                  init_cfg=dict(type='Pretrained',
                                checkpoint='checkpoints/datpp-small_in1k_224.pth',
                                prefix='backbone.')),
    # the release's FPN makes its fifth level with a conv on stage 3 (mmdet: max-pool)
    neck=dict(in_channels=[96, 192, 384, 768], add_extra_convs='on_input'))
