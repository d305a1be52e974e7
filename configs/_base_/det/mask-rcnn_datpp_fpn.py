# Mask R-CNN with FPN (mmdet's R-50 model) on DAT-T++, as the DAT++ release
# (LeapLabTHU/DAT-Detection, mmdet 2.26): the backbone starts from the ImageNet checkpoint
# converted with tools/model_converters/datpp2mmpretrain.py (see configs/datpp/README.md),
# and the FPN makes its fifth level with a conv on stage 3 (mmdet: max-pool). The configs in
# configs/mask_rcnn add the data and the schedule, and set the drop path of the release's
# config (and the arch, checkpoint and channels of DAT-S++). The release trains the DAT++
# detectors on 64 images a batch (4 nodes x 8 GPUs x 2) with lr 4e-4 (RetinaNet 2e-4); the
# configs here use 8 GPUs x 2 images with the lr scaled linearly (1e-4, RetinaNet 5e-5);
# --auto-scale-lr scales it to another total batch (base_batch_size=16).
_base_ = ['mmdet::_base_/models/mask-rcnn_r50_fpn.py', './default_runtime.py']

model = dict(
    backbone=dict(_delete_=True, type='DATPlusPlus', arch='tiny', img_size=224,
                  drop_path_rate=0.0, out_indices=(0, 1, 2, 3), attn_impl='auto',
                  init_cfg=dict(type='Pretrained', prefix='backbone.',
                                checkpoint='checkpoints/datpp-tiny_in1k_224.pth')),
    neck=dict(in_channels=[64, 128, 256, 512], add_extra_convs='on_input'))
