# DAT-T++ backbone (the DAT++ release's configs/dat_tiny.yaml), shared by the
# classification, detection and segmentation configs. Use it as
# `model = dict(backbone=_base_.backbone, ...)`: `_delete_` replaces the backbone of the
# inherited library config. Drop path 0.2 is the ImageNet value (dat_tiny.yaml); the
# detection and segmentation configs set their own.
backbone = dict(
    _delete_=True,
    type='DATPlusPlus',
    arch='tiny',
    img_size=224,
    drop_path_rate=0.2,
    out_indices=(3, ),
    attn_impl='auto')  # or 'reference', 'sdpa', 'flex': see dat/models/backbones/dat.py
