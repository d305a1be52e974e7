# RetinaNet with FPN (mmdet's R-50 model) on DAT-T++, initialised as in
# mask-rcnn_datpp_fpn.py. Stages 1-3 feed the FPN, as in the release (whose stage-0 output
# has no norm).
# Gradient checkpointing per block (with_cp) is on, as use_checkpoint=True in the release's
# configs/_base_/models/retinanet_dat_fpn.py (LeapLabTHU/DAT-Detection@4d4023d; it checkpoints
# each stage, the same numbers): the authors trained on 40 GB GPUs. Not measured to be
# unnecessary on a GPU with the faster neighbourhood attention; turn it off with
# --cfg-options model.backbone.with_cp=False where memory allows.
_base_ = ['mmdet::_base_/models/retinanet_r50_fpn.py', './default_runtime.py']

model = dict(
    backbone=dict(_delete_=True, type='DATPlusPlus', arch='tiny', img_size=224,
                  drop_path_rate=0.0, out_indices=(1, 2, 3), with_cp=True, attn_impl='auto',
                  init_cfg=dict(type='Pretrained', prefix='backbone.',
                                checkpoint='checkpoints/datpp-tiny_in1k_224.pth')),
    neck=dict(in_channels=[128, 256, 512], start_level=0))
