# DAT-T backbone (the 2022 release's dat_tiny), shared by the classification, detection
# and segmentation configs. Use it as `model = dict(backbone=_base_.backbone, ...)`:
# `_delete_` replaces the backbone of the inherited library config (ResNet, Swin, ...).
# Task configs add `custom_imports` for their adapter (dat.adapters.mmpretrain / mmdet / mmseg).
backbone = dict(
    _delete_=True,
    type='DAT',
    arch='tiny',
    img_size=224,
    window_size=7,
    drop_path_rate=0.2,
    out_indices=(3, ),
    attn_impl='auto')  # or 'reference', 'sdpa', 'flex': see dat/models/backbones/dat.py
