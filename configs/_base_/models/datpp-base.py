# DAT-B++ backbone (the DAT++ release's configs/dat_base.yaml), shared by the
# classification, detection and segmentation configs. Use it as
# `model = dict(backbone=_base_.backbone, ...)`: `_delete_` replaces the backbone of the
# inherited library config. Drop path 0.7 is the ImageNet value (dat_base.yaml); the
# detection and segmentation configs set their own.
backbone = dict(
    _delete_=True,
    type='DATPlusPlus',
    arch='base',
    img_size=224,
    drop_path_rate=0.7,
    out_indices=(3, ),
    attn_impl='auto')  # or 'reference', 'sdpa', 'flex': see dat/models/backbones/dat.py
