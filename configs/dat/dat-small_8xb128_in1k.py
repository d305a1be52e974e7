_base_ = [
    'mmpretrain::_base_/models/swin_transformer/tiny_224.py',
    '../_base_/models/dat-small.py',
    '../_base_/datasets/imagenet_bs128_dat_224.py',
    '../_base_/schedules/imagenet_bs1024_adamw_dat.py',
    '../_base_/default_runtime.py',
]
custom_imports = dict(imports=['dat.adapters.mmpretrain'], allow_failed_imports=False)

# The 2022 release initialises with PyTorch's defaults, so no model-level init_cfg.
model = dict(backbone=_base_.backbone, head=dict(in_channels=768), init_cfg=None)
