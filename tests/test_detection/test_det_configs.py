"""Every detection recipe parses, follows the DAT recipe, builds, and predicts on the CPU
with random weights.

Every distinct detector (marked heavy) predicts on an 800x1216 image (DAT-T's; 480x736 for
the larger backbones) and on a 237x301 one.
A 1x and a 3x recipe of the same detector build the same model (asserted), so the model is
run once per pair. Test-time settings only: the RPN keeps 100 proposals
instead of 1000 (or the Cascade heads alone take minutes on two CPU cores), and the score
threshold is 0 with 20 detections kept, so that the random heads return boxes and masks.
"""
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from det_helpers import REPO, detection_configs

CONFIGS = detection_configs()
CHANNELS = {'tiny': [96, 192, 384, 768], 'small': [96, 192, 384, 768],
            'base': [128, 256, 512, 1024]}
DROP_PATH = {'tiny': 0.2, 'small': 0.3, 'base': 0.5}


def load(config: str) -> Config:
    return Config.fromfile(str(REPO / config))


def test_every_detector_of_the_issue_has_a_recipe():
    names = {Path(c).stem for c in CONFIGS}
    expected = {f'{det}_dat-{arch}_fpn_{sched}_coco'
                for det in ('retinanet', 'mask-rcnn') for arch in ('tiny', 'small')
                for sched in ('amp-1x', 'amp-ms-crop-3x')}
    expected |= {f'cascade-mask-rcnn_dat-{arch}_fpn_amp-ms-crop-3x_coco'
                 for arch in ('tiny', 'small', 'base')}
    expected.add('cascade-mask-rcnn_dat-tiny_fpn_amp-1x_coco')  # the paper's Cascade 1x row
    assert names == expected


def test_cascade_1x_is_the_3x_model_with_the_1x_data_and_schedule():
    """Cascade Mask R-CNN DAT-T 1x (paper: 49.1 box AP, 42.5 mask AP, 86 M parameters):
    the 3x model (4conv1fc heads with SyncBN and GIoU), single-scale training at 1333x800,
    12 epochs."""
    one = load('configs/cascade_rcnn/cascade-mask-rcnn_dat-tiny_fpn_amp-1x_coco.py')
    three = load('configs/cascade_rcnn/cascade-mask-rcnn_dat-tiny_fpn_amp-ms-crop-3x_coco.py')
    assert one.model == three.model
    heads = one.model.roi_head.bbox_head
    assert [(h.type, h.num_shared_convs, h.num_shared_fcs, h.norm_cfg.type, h.loss_bbox.type)
            for h in heads] == [('ConvFCBBoxHead', 4, 1, 'SyncBN', 'GIoULoss')] * 3
    mask_rcnn = load('configs/mask_rcnn/mask-rcnn_dat-tiny_fpn_amp-1x_coco.py')
    assert one.train_dataloader == mask_rcnn.train_dataloader
    assert [t.type for t in one.train_dataloader.dataset.pipeline] == [
        'CheckedLoadImageFromFile', 'LoadAnnotations', 'Resize', 'RandomFlip', 'PackDetInputs']
    assert one.train_dataloader.dataset.pipeline[2].scale == (1333, 800)
    assert (one.train_cfg, one.param_scheduler) == (mask_rcnn.train_cfg,
                                                    mask_rcnn.param_scheduler)
    assert one.train_cfg.max_epochs == 12 and one.param_scheduler[1].milestones == [8, 11]


def test_cascade_dat_tiny_has_the_papers_86m_parameters():
    model = build_detector('configs/cascade_rcnn/cascade-mask-rcnn_dat-tiny_fpn_amp-1x_coco.py')
    assert sum(p.numel() for p in model.parameters()) == 85_660_588  # paper: 86 M


@pytest.mark.parametrize('config', CONFIGS, ids=lambda c: Path(c).stem)
def test_config_follows_the_recipe(config):
    cfg = load(config)
    arch = Path(config).stem.split('_dat-')[1].split('_')[0]
    assert cfg.default_scope == 'mmdet'
    assert cfg.custom_imports.imports == ['dat.adapters.mmdet', 'dat.apply_mmengine_patches']
    backbone = cfg.model.backbone
    assert '_delete_' not in backbone and backbone.type == 'DAT' and backbone.arch == arch
    assert backbone.drop_path_rate == DROP_PATH[arch]
    assert backbone.init_cfg == dict(type='Pretrained',
                                     checkpoint=f'checkpoints/dat-{arch}_in1k.pth',
                                     prefix='backbone.')
    used = list(backbone.out_indices)
    assert cfg.model.neck.in_channels == [CHANNELS[arch][i] for i in used]
    assert used == ([1, 2, 3] if config.startswith('configs/retinanet') else [0, 1, 2, 3])

    optim = cfg.optim_wrapper
    assert optim.type == 'AmpOptimWrapper'
    assert optim.optimizer == dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999),
                                   weight_decay=0.05)
    assert optim.paramwise_cfg.norm_decay_mult == 0.0
    # no decay on the position tables: the backbone's no_weight_decay_keywords, which this
    # constructor reads (test_param_groups_skip_decay_on_norms_and_position_tables)
    assert optim.constructor == 'NoDecayKeywordsConstructor'
    assert cfg.auto_scale_lr.base_batch_size == 16

    three_x = 'ms-crop-3x' in config
    epochs, steps = (36, [27, 33]) if three_x else (12, [8, 11])
    assert cfg.train_cfg.max_epochs == epochs
    assert cfg.param_scheduler[1].milestones == steps and cfg.param_scheduler[1].end == epochs
    transforms = [t.type for t in cfg.train_dataloader.dataset.pipeline]
    assert ('RandomChoice' in transforms) == three_x
    if three_x:
        crop = cfg.train_dataloader.dataset.pipeline[transforms.index('RandomChoice')]
        assert [t.type for t in crop.transforms[1]] == [
            'RandomChoiceResize', 'RandomCrop', 'RandomChoiceResize']
    with_mask = not config.startswith('configs/retinanet')
    # (the 1x recipes take mmdet's pipeline through a scoped base: _scope_='mmdet' is added)
    load_annotations = {k: v for k, v in cfg.train_dataloader.dataset.pipeline[1].items()
                        if k != '_scope_'}
    assert cfg.train_dataloader.dataset.pipeline[0].type == 'CheckedLoadImageFromFile'
    assert load_annotations == dict(
        type='LoadAnnotations', with_bbox=True, **({'with_mask': True} if with_mask else {}))


def test_param_groups_skip_decay_on_norms_and_position_tables():
    """The recipe's paramwise rules, applied by mmengine to a real DAT-T Mask R-CNN."""
    from mmdet.registry import MODELS
    from mmengine.optim import build_optim_wrapper

    import dat.adapters.mmdet  # noqa: F401
    init_default_scope('mmdet')
    cfg = load('configs/mask_rcnn/mask-rcnn_dat-tiny_fpn_amp-1x_coco.py')
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    # AmpOptimWrapper needs CUDA; the parameter groups do not depend on the wrapper
    optim_cfg = cfg.optim_wrapper.copy()
    optim_cfg.type = 'OptimWrapper'
    optim = build_optim_wrapper(model, optim_cfg)
    decay = {id(p): g['weight_decay'] for g in optim.optimizer.param_groups for p in g['params']}
    named = dict(model.named_parameters())
    assert decay[id(named['backbone.stages.2.blocks.1.attn.rpe_table'])] == 0
    assert decay[id(named['backbone.stages.0.blocks.0.attn.relative_position_bias_table'])] == 0
    assert decay[id(named['backbone.stages.2.blocks.1.norm1.weight'])] == 0
    assert decay[id(named['backbone.stages.2.blocks.1.attn.offset.norm.weight'])] == 0
    assert decay[id(named['backbone.norm0.weight'])] == 0
    assert decay[id(named['backbone.stages.2.blocks.1.attn.q.weight'])] == 0.05
    assert decay[id(named['neck.fpn_convs.0.conv.weight'])] == 0.05


def build_detector(config: str):
    from mmdet.registry import MODELS

    import dat.adapters.mmdet  # noqa: F401
    init_default_scope('mmdet')
    cfg = load(config)
    cfg.model.backbone.init_cfg = None
    # random heads score below mmdet's 0.05 threshold; keep 20 boxes to check their shapes
    test_cfg = cfg.model.test_cfg
    if 'rpn' in test_cfg:
        test_cfg.rpn.max_per_img = 100
        test_cfg.rcnn.update(score_thr=0.0, max_per_img=20)
    else:
        test_cfg.update(score_thr=0.0, max_per_img=20)
    torch.manual_seed(0)
    return MODELS.build(cfg.model).eval()


def predict(model, height: int, width: int):
    from mmdet.structures import DetDataSample
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8)
    sample = DetDataSample(metainfo=dict(img_shape=(height, width), ori_shape=(height, width),
                                         scale_factor=(1.0, 1.0)))
    with torch.no_grad():
        result = model.test_step(dict(inputs=[image], data_samples=[sample]))[0]
    # the data preprocessor pads to a multiple of 32, not of the window (7) times 32
    pad_h, pad_w = result.metainfo['batch_input_shape']
    assert (pad_h % 32, pad_w % 32) == (0, 0) and pad_h - 32 < height <= pad_h
    pred = result.pred_instances
    boxes = pred.bboxes
    assert boxes.dim() == 2 and boxes.shape[1] == 4 and len(boxes) > 0
    assert torch.isfinite(boxes).all() and torch.isfinite(pred.scores).all()
    assert (boxes[:, 0::2] >= 0).all() and (boxes[:, 0::2] <= width).all()
    assert (boxes[:, 1::2] >= 0).all() and (boxes[:, 1::2] <= height).all()
    assert ((pred.labels >= 0) & (pred.labels < 80)).all()
    if 'masks' in pred:
        assert tuple(pred.masks.shape) == (len(boxes), height, width)
    return result


def twin(config: str):
    other = config.replace('_amp-1x_', '_amp-ms-crop-3x_')
    return other if other != config and other in CONFIGS else None


# one recipe per distinct model: every 1x, and the 3x recipes that have no 1x twin (whose
# 3x twin must build the same model)
TWINS_3X = {twin(c) for c in CONFIGS if twin(c)}
MODELS_TO_RUN = [c for c in CONFIGS if c not in TWINS_3X]


def test_each_1x_and_3x_pair_builds_the_same_model():
    pairs = [(c, twin(c)) for c in MODELS_TO_RUN if twin(c)]
    assert len(pairs) == 5
    for one, three in pairs:
        assert load(one).model == load(three).model


@pytest.mark.heavy
@pytest.mark.parametrize('config', MODELS_TO_RUN, ids=lambda c: Path(c).stem)
def test_predict_at_800x1216_and_odd_size(config):
    """DAT-T's detectors at the COCO test size; the larger backbones (the same padding and
    layers, several times the CPU time) at a smaller multi-scale size."""
    model = build_detector(config)
    predict(model, *((800, 1216) if 'dat-tiny' in config else (480, 736)))
    predict(model, 237, 301)


@pytest.mark.parametrize('config', [
    'configs/mask_rcnn/mask-rcnn_dat-tiny_fpn_amp-ms-crop-3x_coco.py',
    'configs/retinanet/retinanet_dat-tiny_fpn_amp-ms-crop-3x_coco.py'], ids=['masks', 'boxes'])
def test_3x_augmentation_on_generated_coco(tmp_path, config):
    """The 3x train pipeline (multi-scale + DETR-style crop) on boxes and polygon masks."""
    import numpy as np
    from mmdet.registry import DATASETS

    from det_helpers import make_coco
    init_default_scope('mmdet')
    make_coco(tmp_path, 4)
    cfg = load(config).train_dataloader.dataset
    cfg.update(data_root=str(tmp_path), ann_file='annotations.json',
               data_prefix=dict(img='images/'), metainfo=dict(classes=('box', 'disk')))
    dataset = DATASETS.build(cfg)
    np.random.seed(0)
    for index in range(4):
        item = dataset[index]
        height, width = item['inputs'].shape[1:]
        assert 480 <= min(height, width) <= 800 or max(height, width) == 1333
        boxes = item['data_samples'].gt_instances.bboxes.tensor
        assert ((boxes[:, 0::2] >= 0) & (boxes[:, 0::2] <= width)).all()
        assert ((boxes[:, 1::2] >= 0) & (boxes[:, 1::2] <= height)).all()
        if 'mask_rcnn' in config:
            masks = item['data_samples'].gt_instances.masks
            assert (masks.height, masks.width) == (height, width) and len(masks) == len(boxes)
