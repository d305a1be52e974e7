"""Loading converted ImageNet checkpoints into the detection backbone, mismatched
checkpoints, and input shapes the detector refuses.

The checkpoint is the golden mini 2022 model (64 px, windows 4/4/4/2) converted with our
converter, i.e. what tools/model_converters/dat2mmpretrain.py writes.
"""
import logging
from contextlib import contextmanager

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.registry import init_default_scope

from dat.converters import convert_dat2022

from det_helpers import small_config_text

MASK_RCNN = 'configs/mask_rcnn/mask-rcnn_dat-tiny_fpn_amp-1x_coco.py'


@pytest.fixture(scope='module')
def converted(reference_dir, tmp_path_factory):
    """(path, arch_info) of the converted golden checkpoint: backbone.* and head.fc.*."""
    state, info = convert_dat2022(torch.load(reference_dir / 'golden_mini_dat2022.pth',
                                             map_location='cpu'))
    path = tmp_path_factory.mktemp('ckpt') / 'golden_mini_in1k.pth'
    torch.save(dict(state_dict=state, meta=dict(arch_info=info)), path)
    return path, info


@contextmanager
def captured_log(name):
    """Messages that mmengine's current logger prints inside the block."""
    logger = MMLogger.get_instance(name, log_level='INFO')
    messages, handler = [], logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


def dat_for_mmdet(**kwargs):
    from mmdet.registry import MODELS

    import dat.adapters.mmdet  # noqa: F401
    init_default_scope('mmdet')
    return MODELS.build(dict(type='DAT', **kwargs))


def test_converted_checkpoint_matches_classification_backbone(converted):
    from mmengine.runner import load_checkpoint
    from mmpretrain.registry import MODELS as CLS_MODELS

    import dat.adapters.mmpretrain  # noqa: F401
    path, info = converted
    init_default_scope('mmpretrain')
    same = dict(arch=info['arch'], img_size=info['img_size'], window_size=info['window_size'])
    classifier = CLS_MODELS.build(dict(
        type='ImageClassifier', backbone=dict(type='DAT', **same),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=10, in_channels=256))).eval()
    load_checkpoint(classifier, str(path), map_location='cpu', strict=True)

    backbone = dat_for_mmdet(**same, out_indices=(0, 1, 2, 3), init_cfg=dict(
        type='Pretrained', checkpoint=str(path), prefix='backbone.'))
    with captured_log('test_det_same_size') as log:
        backbone.init_weights()
    assert not any('resized' in m for m in log), log
    skipped = [m for m in log if m.startswith('skipped, not in the checkpoint')]
    assert len(skipped) == 1 and all(f'norm{i}.weight' in skipped[0] for i in range(3))
    assert 'norm3' not in skipped[0]
    assert not any(m.startswith('skipped, not used') for m in log), log

    x = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        expected = classifier.backbone(x)[0]
        outs = backbone.eval()(x)
    assert [tuple(o.shape[1:]) for o in outs] == [(32, 56, 56), (64, 28, 28), (128, 14, 14),
                                                  (256, 7, 7)]
    torch.testing.assert_close(outs[3], expected, rtol=0, atol=1e-5)


def test_detector_resizes_tables_of_a_checkpoint_made_at_another_size(converted, tmp_path):
    """Mask R-CNN from our recipe (img_size 224, window 7) with the golden backbone, whose
    tables are for 64 px and window 4: the detector's init_weights loads and resizes them."""
    from mmdet.registry import MODELS

    import dat.adapters.mmdet  # noqa: F401
    path, info = converted
    init_default_scope('mmdet')
    cfg = Config.fromfile(MASK_RCNN)
    cfg.model.backbone.update(arch=info['arch'],
                              init_cfg=dict(cfg.model.backbone.init_cfg, checkpoint=str(path)))
    cfg.model.neck.in_channels = info['arch']['embed_dims']
    detector = MODELS.build(cfg.model)
    with captured_log('test_det_resize') as log:
        detector.init_weights()
    resized = [m for m in log if m.startswith('resized ')]
    assert 'resized stages.2.blocks.1.attn.rpe_table from (4, 7, 7) to (4, 27, 27)' in resized
    assert 'resized stages.3.blocks.1.attn.rpe_table from (8, 3, 3) to (8, 13, 13)' in resized
    assert ('resized stages.0.blocks.0.attn.relative_position_bias_table from (49, 1) to '
            '(169, 1)') in resized
    assert ('resized stages.3.blocks.0.attn.relative_position_bias_table from (9, 8) to '
            '(169, 8)') in resized
    assert ('skipped, not in the checkpoint (kept their initial values): norm0.weight, '
            'norm0.bias, norm1.weight, norm1.bias, norm2.weight, norm2.bias') in log
    state = torch.load(path)['state_dict']
    assert torch.equal(detector.backbone.patch_embed.proj.weight,
                       state['backbone.patch_embed.proj.weight'])

    with torch.no_grad():
        feats = detector.backbone.eval()(torch.rand(1, 3, 512, 640))
    assert [tuple(f.shape) for f in feats] == [(1, 32, 128, 160), (1, 64, 64, 80),
                                               (1, 128, 32, 40), (1, 256, 16, 20)]
    assert all(torch.isfinite(f).all() for f in feats)


@pytest.mark.parametrize('change,named', [
    # a deeper stage 3: its extra blocks are not in the checkpoint
    (dict(depths=[2, 2, 4, 2], block_types=['LS', 'LS', 'LDLD', 'LD']),
     ['missing from the checkpoint (', 'stages.2.blocks.2.norm1.weight']),
    # wider last stage: shape mismatches are listed with both shapes
    (dict(embed_dims=[32, 64, 128, 512]),
     ['mis-shaped', 'stages.3.downsample.proj.weight (256, 128, 2, 2) vs (512, 128, 2, 2)']),
    # a shallower stage 3: the checkpoint's extra blocks are named
    (dict(depths=[2, 2, 1, 2], block_types=['LS', 'LS', 'L', 'LD']),
     ['in the checkpoint but not in the model', 'stages.2.blocks.1.norm1.weight']),
])
def test_mismatched_checkpoint_names_the_keys(converted, change, named):
    path, info = converted
    backbone = dat_for_mmdet(arch=dict(info['arch'], **change), out_indices=(0, 1, 2, 3),
                             init_cfg=dict(type='Pretrained', checkpoint=str(path),
                                           prefix='backbone.'))
    before = backbone.patch_embed.proj.weight.clone()
    with pytest.raises(ValueError, match='does not fit the DAT backbone') as error:
        backbone.init_weights()
    for text in named:
        assert text in str(error.value)
    assert torch.equal(backbone.patch_embed.proj.weight, before)  # nothing half-loaded


def test_wrong_prefix_names_the_checkpoint_keys(converted):
    path, info = converted
    backbone = dat_for_mmdet(arch=info['arch'], init_cfg=dict(type='Pretrained',
                                                              checkpoint=str(path)))
    with pytest.raises(ValueError, match=r"prefix ''") as error:
        backbone.init_weights()
    assert 'in the checkpoint but not in the model' in str(error.value)
    assert 'backbone.patch_embed.proj.weight' in str(error.value)
    assert "its keys under 'backbone.' would fit with prefix='backbone.'" in str(error.value)


def test_unsupported_image_shapes(tmp_path):
    """Inputs given to the detector directly must be (B, 3, H, W) with both sides >= 32;
    through the data preprocessor small images are padded to 32 and work."""
    from mmdet.registry import MODELS
    from mmdet.structures import DetDataSample

    import dat.adapters.mmdet  # noqa: F401
    init_default_scope('mmdet')
    config = tmp_path / 'mini.py'
    config.write_text(small_config_text(MASK_RCNN, tmp_path, ('box', 'disk')))
    detector = MODELS.build(Config.fromfile(str(config)).model).eval()
    sample = DetDataSample(metainfo=dict(img_shape=(24, 40), ori_shape=(24, 40),
                                         scale_factor=(1.0, 1.0), batch_input_shape=(24, 40)))
    with pytest.raises(ValueError, match=r'input of size \(24, 40\) is too small for DAT: '
                                         r'both sides must be at least 32 pixels'):
        detector.predict(torch.rand(1, 3, 24, 40), [sample])
    with pytest.raises(ValueError, match=r'DAT expects a \(B, C, H, W\) batch, got shape '
                                         r'\(3, 64, 64\)'):
        detector.extract_feat(torch.rand(3, 64, 64))

    tiny = torch.randint(0, 256, (3, 20, 28), dtype=torch.uint8)
    sample = DetDataSample(metainfo=dict(img_shape=(20, 28), ori_shape=(20, 28),
                                         scale_factor=(1.0, 1.0)))
    with torch.no_grad():
        result = detector.test_step(dict(inputs=[tiny], data_samples=[sample]))[0]
    assert result.metainfo['batch_input_shape'] == (32, 32)
    assert torch.isfinite(result.pred_instances.bboxes).all()
