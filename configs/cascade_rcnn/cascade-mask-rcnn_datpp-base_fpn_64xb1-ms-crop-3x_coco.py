# DAT-B++ cascade Mask R-CNN, 3x with the multi-scale + crop augmentation: the authors'
# configs/dat/cmrcn_base_3x_8n_dp08_lr4.py (LeapLabTHU/DAT-Detection, mmdet 2.26), trained in
# fp32 as there (their OptimizerHook has no fp16), on 8 nodes x 8 GPUs x 1 image (64 images,
# as the others): bsz_per_gpu = 1 there.
_base_ = ['../_base_/det/cascade-mask-rcnn_datpp_fpn.py', '../_base_/det/coco_instance_ms-crop.py',
          '../_base_/det/schedule_adamw_datpp_3x.py']
model = dict(backbone=dict(arch='base', drop_path_rate=0.8,
                           init_cfg=dict(checkpoint='checkpoints/datpp-base_in1k_224.pth')),
             neck=dict(in_channels=[128, 256, 512, 1024]))
train_dataloader = dict(batch_size=1)
