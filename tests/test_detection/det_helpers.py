"""Shared pieces of the detection tests: a scaled-down DAT, a generated COCO-format
dataset, and test configs that inherit the real recipes with everything made small."""
import json
from pathlib import Path

import numpy as np
from mini_configs import DAT_ARCH, DATPP_ARCH
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIRS = ('retinanet', 'mask_rcnn', 'cascade_rcnn')

# Scaled-down DAT and DAT++ backbones (tests/mini_configs.py); strides 4..32 like the real ones.
MINI_BACKBONE = dict(arch=DAT_ARCH, img_size=64, window_size=[4, 4, 4, 2],
                     drop_path_rate=0.1, init_cfg=None)
MINI_PP_BACKBONE = dict(arch=DATPP_ARCH, img_size=64, drop_path_rate=0.1, init_cfg=None)


def detection_configs(family: str = 'dat'):
    """Every detection recipe under configs/ with a ``family`` backbone (``'dat'`` or
    ``'datpp'``), as paths relative to the repository."""
    return sorted(str(p.relative_to(REPO)) for d in CONFIG_DIRS
                  for p in (REPO / 'configs' / d).glob(f'*_{family}-*.py'))


def make_coco(root: Path, num_images: int, classes=('box', 'disk'), size=(160, 224),
              seed: int = 0, max_objects: int = 3) -> Path:
    """Write ``root/images/*.png`` and ``root/annotations.json``: bright boxes and disks on a
    dark noisy background, each with a box and a polygon mask. Returns the json path."""
    rng = np.random.default_rng(seed)
    (root / 'images').mkdir(parents=True, exist_ok=True)
    height, width = size
    images, annotations = [], []
    for image_id in range(1, num_images + 1):
        pixels = rng.integers(0, 60, (height, width, 3)).astype(np.uint8)
        for _ in range(rng.integers(1, max_objects + 1)):
            label = int(rng.integers(len(classes)))
            w, h = (int(v) for v in rng.integers(24, min(height, width) // 2, 2))
            x0, y0 = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
            if classes[label] == 'disk':
                angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)
                xs = x0 + w / 2 + (w / 2 - 0.5) * np.cos(angles)
                ys = y0 + h / 2 + (h / 2 - 0.5) * np.sin(angles)
                yy, xx = np.mgrid[:height, :width]
                inside = ((xx + 0.5 - x0 - w / 2) / (w / 2)) ** 2 + \
                    ((yy + 0.5 - y0 - h / 2) / (h / 2)) ** 2 <= 1
                pixels[inside] = (230, 60, 60)
            else:
                xs = np.array([x0, x0 + w, x0 + w, x0], dtype=float)
                ys = np.array([y0, y0, y0 + h, y0 + h], dtype=float)
                pixels[y0:y0 + h, x0:x0 + w] = (240, 240, 240)
            polygon = np.stack([xs, ys], 1).reshape(-1).round(1).tolist()
            annotations.append(dict(id=len(annotations) + 1, image_id=image_id,
                                    category_id=label + 1, bbox=[x0, y0, w, h], area=w * h,
                                    iscrowd=0, segmentation=[polygon]))
        name = f'{image_id:04d}.png'
        Image.fromarray(pixels).save(root / 'images' / name)
        images.append(dict(id=image_id, file_name=name, height=height, width=width))
    categories = [dict(id=i + 1, name=name) for i, name in enumerate(classes)]
    ann_file = root / 'annotations.json'
    ann_file.write_text(json.dumps(dict(images=images, annotations=annotations,
                                        categories=categories)))
    return ann_file


def small_config_text(recipe: str, data_root: Path, classes, scale=(224, 160),
                      max_epochs: int = 2, backbone: dict = None) -> str:
    """A config that inherits ``recipe`` (e.g. configs/mask_rcnn/...py) and shrinks it:
    the mini DAT (or ``backbone``), 32-channel FPN and heads, the generated dataset, a small
    image scale."""
    backbone = backbone or MINI_BACKBONE
    masks = 'retinanet' not in recipe
    if masks:
        heads = f"""
    rpn_head=dict(in_channels=32, feat_channels=32),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=32),
        bbox_head=dict(in_channels=32, fc_out_channels=64, num_classes={len(classes)}),
        mask_roi_extractor=dict(out_channels=32),
        mask_head=dict(in_channels=32, conv_out_channels=32, num_classes={len(classes)})),
    test_cfg=dict(rpn=dict(nms_pre=200, max_per_img=100),
                  rcnn=dict(score_thr=0.0, max_per_img=20)),"""
        out_indices, in_channels = (0, 1, 2, 3), backbone['arch']['embed_dims']
    else:
        heads = f"""
    bbox_head=dict(in_channels=32, feat_channels=32, stacked_convs=1,
                   num_classes={len(classes)}),
    test_cfg=dict(score_thr=0.0, nms_pre=200, max_per_img=20),"""
        out_indices, in_channels = (1, 2, 3), backbone['arch']['embed_dims'][1:]
    load = (f"dict(type='LoadAnnotations', with_bbox=True, with_mask={masks})")
    backbone_args = ', '.join(f'{k}={v!r}' for k, v in
                              dict(backbone, arch=dict(backbone['arch'], _delete_=True)).items())
    return f"""
_base_ = '{REPO / recipe}'
model = dict(
    backbone=dict({backbone_args},
                  out_indices={out_indices!r}),
    neck=dict(in_channels={in_channels!r}, out_channels=32),{heads}
)
data_root = '{data_root}/'
metainfo = dict(classes={tuple(classes)!r})
train_pipeline = [
    dict(type='LoadImageFromFile'),
    {load},
    dict(type='Resize', scale={scale!r}, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale={scale!r}, keep_ratio=True),
    {load},
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
_data = dict(data_root=data_root, ann_file='annotations.json', metainfo=metainfo,
             data_prefix=dict(img='images/'))
train_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False,
                        dataset=dict(_data, pipeline=train_pipeline))
val_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False,
                      dataset=dict(_data, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations.json')
test_evaluator = val_evaluator
train_cfg = dict(max_epochs={max_epochs}, val_interval={max_epochs + 1})
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval={max_epochs}))
"""
