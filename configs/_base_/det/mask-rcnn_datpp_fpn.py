# Mask R-CNN with FPN (mmdet's R-50 model) on DAT-T++, as the DAT++ release
# (LeapLabTHU/DAT-Detection, mmdet 2.26): the backbone starts from the ImageNet checkpoint
# converted with tools/model_converters/datpp2mmpretrain.py (see configs/datpp/README.md),
# and the FPN makes its fifth level with a conv on stage 3 (mmdet: max-pool). The configs in
# configs/mask_rcnn add the data and the schedule, and set the drop path of the release's
# config (and the arch, checkpoint and channels of DAT-S++). Batch and lr: those of the
# release, 32 GPUs x 2 images at lr 4e-4 (schedule_adamw_datpp_*.py).
# Gradient checkpointing per block (with_cp) is on, as use_checkpoint=True in the release's
# configs/_base_/models/mask_rcnn_dat_fpn.py (LeapLabTHU/DAT-Detection@4d4023d; it checkpoints
# each stage, the same numbers): the authors trained on 40 GB GPUs. Not measured to be
# unnecessary on a GPU with the faster neighbourhood attention; turn it off with
# --cfg-options model.backbone.with_cp=False where memory allows.
_base_ = ['mmdet::_base_/models/mask-rcnn_r50_fpn.py', './default_runtime.py']

model = dict(
    backbone=dict(_delete_=True, type='DATPlusPlus', arch='tiny', img_size=224,
                  drop_path_rate=0.0, out_indices=(0, 1, 2, 3), with_cp=True, attn_impl='auto',
                  init_cfg=dict(type='Pretrained', prefix='backbone.',
                                checkpoint='checkpoints/datpp-tiny_in1k_224.pth')),
    neck=dict(in_channels=[64, 128, 256, 512], add_extra_convs='on_input'))
