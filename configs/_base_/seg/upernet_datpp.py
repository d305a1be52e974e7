# UperNet (as upernet_dat.py) on DAT-T++, as the DAT++ release (LeapLabTHU/DAT-Segmentation,
# configs/dat/upn_*_160k_*.py, mmseg 0.29): 160k iterations at 8 GPUs x 2 images with the
# release's weight-decay rule (schedule_adamw_datpp_160k.py), fp32 (the configs of DAT-T++
# and DAT-S++ add mixed precision, as the release). The backbone starts from the ImageNet
# checkpoint converted with tools/model_converters/datpp2mmpretrain.py (see
# configs/datpp/README.md); the configs in configs/upernet set the drop path of the release's
# config (and the arch, checkpoint and channels of DAT-S++ and DAT-B++).
# Gradient checkpointing per block (with_cp) is on, as use_checkpoint=True in the release's
# configs/_base_/models/upernet_dat.py (LeapLabTHU/DAT-Segmentation@fdd2039; it checkpoints
# each stage, the same numbers; its Semantic FPN has it off, as fpn_datpp.py). Not measured to
# be unnecessary on a GPU with the faster neighbourhood attention; turn it off with
# --cfg-options model.backbone.with_cp=False where memory allows.
_base_ = ['mmseg::_base_/models/upernet_swin.py', '../datasets/ade20k_dat.py',
          './default_runtime.py', './schedule_adamw_datpp_160k.py']

crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(_delete_=True, type='DATPlusPlus', arch='tiny', img_size=224,
                  drop_path_rate=0.3, out_indices=(0, 1, 2, 3), with_cp=True,
                  attn_impl='auto',
                  init_cfg=dict(type='Pretrained', prefix='backbone.',
                                checkpoint='checkpoints/datpp-tiny_in1k_224.pth')),
    decode_head=dict(in_channels=[64, 128, 256, 512], num_classes=150),
    auxiliary_head=dict(in_channels=256, num_classes=150))
train_dataloader = dict(batch_size=2)
