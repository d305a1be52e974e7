"""The DAT++ detection configs: the settings of the authors' configs (LeapLabTHU/DAT-Detection),
released checkpoints converting to them strictly, prediction at an odd size, and training
and testing with the tools on 2 CPU processes."""
import json
import math
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from test_det_configs import build_detector, predict
from test_train import free_port, run

from dat.converters.datpp import convert_datpp_downstream, rename_key

from det_helpers import MINI_PP_BACKBONE, REPO, detection_configs, make_coco, small_config_text

CONFIGS = detection_configs('datpp')
DIMS = {'tiny': [64, 128, 256, 512], 'small': [96, 192, 384, 768],
        'base': [128, 256, 512, 1024]}
# name: (authors' config, drop path, lr for their 64 images, mixed precision)
RELEASE = {
    'retinanet_datpp-tiny_fpn_32xb2-amp-ms-crop-1x_coco':
        ('rtn_tiny_1x_4n_dp00_lr2', 0.0, 2e-4, True),
    'retinanet_datpp-tiny_fpn_32xb2-amp-ms-crop-3x_coco':
        ('rtn_tiny_3x_4n_dp02_lr2', 0.2, 2e-4, True),
    'retinanet_datpp-small_fpn_32xb2-amp-ms-crop-1x_coco':
        ('rtn_small_1x_4n_dp01_lr2', 0.1, 2e-4, True),
    'retinanet_datpp-small_fpn_32xb2-amp-ms-crop-3x_coco':
        ('rtn_small_3x_4n_dp05_lr2', 0.5, 2e-4, True),
    'mask-rcnn_datpp-tiny_fpn_32xb2-amp-ms-crop-1x_coco':
        ('mrcn_tiny_1x_4n_dp00_lr4', 0.0, 4e-4, True),
    'mask-rcnn_datpp-tiny_fpn_32xb2-amp-ms-crop-3x_coco':
        ('mrcn_tiny_3x_4n_dp03_lr4', 0.3, 4e-4, True),
    'mask-rcnn_datpp-small_fpn_32xb2-amp-ms-crop-1x_coco':
        ('mrcn_small_1x_4n_dp01_lr4', 0.1, 4e-4, True),
    'mask-rcnn_datpp-small_fpn_32xb2-amp-ms-crop-3x_coco':
        ('mrcn_small_3x_4n_dp05_lr4', 0.5, 4e-4, True),
    'cascade-mask-rcnn_datpp-tiny_fpn_32xb2-amp-ms-crop-1x_coco':
        ('cmrcn_tiny_1x_4n_dp00_lr4', 0.0, 4e-4, True),
    'cascade-mask-rcnn_datpp-tiny_fpn_32xb2-amp-ms-crop-3x_coco':
        ('cmrcn_tiny_3x_4n_dp01_lr4', 0.1, 4e-4, True),
    'cascade-mask-rcnn_datpp-small_fpn_32xb2-ms-crop-3x_coco':
        ('cmrcn_small_3x_4n_dp05_lr4', 0.5, 4e-4, False),
    'cascade-mask-rcnn_datpp-base_fpn_64xb1-ms-crop-3x_coco':
        ('cmrcn_base_3x_8n_dp08_lr4', 0.8, 4e-4, False),
}
# one config per distinct model (the 1x and 3x configs of a detector build the same one)
MODELS = [c for c in CONFIGS if '3x' in c]


def arch_of(config):
    return Path(config).stem.split('_datpp-')[1].split('_')[0]


def release_checkpoint(model, layout):
    """What the authors' checkpoint of this model holds: their backbone keys (from the key
    list) and the neck and head keys, which mmdet 2.26 names as mmdet 3 does."""
    state = {f'backbone.{k}': torch.randn(shape) for k, shape in layout.items()}
    state.update((k, torch.randn(v.shape) if v.is_floating_point()
                  else torch.zeros(v.shape, dtype=v.dtype)) for k, v in model.state_dict().items()
                 if not k.startswith('backbone.'))
    return dict(state_dict=state, meta=dict(CLASSES=('person', 'bicycle')))


def test_every_released_detector_has_a_config():
    assert {Path(c).stem for c in CONFIGS} == set(RELEASE)


@pytest.mark.parametrize('config', CONFIGS, ids=lambda c: Path(c).stem)
def test_config_follows_the_release(config):
    cfg = Config.fromfile(REPO / config)
    _, drop_path, lr, amp = RELEASE[Path(config).stem]
    arch = arch_of(config)
    backbone = cfg.model.backbone
    assert (backbone.type, backbone.arch, backbone.img_size) == ('DATPlusPlus', arch, 224)
    assert backbone.drop_path_rate == drop_path
    assert backbone.init_cfg.checkpoint == f'checkpoints/datpp-{arch}_in1k_224.pth'
    retina = config.startswith('configs/retinanet')
    assert backbone.out_indices == ((1, 2, 3) if retina else (0, 1, 2, 3))
    assert cfg.model.neck.in_channels == [DIMS[arch][i] for i in backbone.out_indices]
    if config.startswith('configs/mask_rcnn'):
        assert cfg.model.neck.add_extra_convs == 'on_input'

    # gradient checkpointing: use_checkpoint=True in the release's three model bases
    assert backbone.with_cp is True

    optim = cfg.optim_wrapper
    assert optim.type == ('AmpOptimWrapper' if amp else 'OptimWrapper')
    # the release's batch (64 images: 4 nodes x 8 GPUs x 2, DAT-B++ cascade 8 x 8 x 1) and lr,
    # the batch in the name, and --auto-scale-lr from that batch
    gpus, per_gpu = map(int, re.search(r'_(\d+)xb(\d+)-', config).groups())
    assert (gpus, per_gpu) == ((64, 1) if 'datpp-base' in config else (32, 2))
    assert cfg.train_dataloader.batch_size == per_gpu
    assert cfg.auto_scale_lr == dict(enable=False, base_batch_size=64) and gpus * per_gpu == 64
    assert optim.optimizer.lr == lr
    assert (optim.optimizer.type, optim.optimizer.weight_decay) == ('AdamW', 0.05)
    assert optim.paramwise_cfg.norm_decay_mult == 0.0
    epochs, steps = (36, [27, 33]) if '3x' in config else (12, [8, 11])
    assert cfg.train_cfg.max_epochs == epochs and cfg.param_scheduler[1].milestones == steps
    warmup = cfg.param_scheduler[0]
    assert (warmup.type, warmup.start_factor, warmup.end) == ('LinearLR', 0.001, 500)
    # the release uses the multi-scale + crop augmentation for 1x too
    assert 'RandomChoice' in [t.type for t in cfg.train_dataloader.dataset.pipeline]


@pytest.mark.parametrize('config', MODELS, ids=lambda c: Path(c).stem)
def test_released_checkpoint_converts_and_loads_strictly(config, datpp_backbone_layouts):
    from mmdet.registry import MODELS as REGISTRY
    from mmengine.registry import init_default_scope

    import dat.adapters.mmdet  # noqa: F401
    init_default_scope('mmdet')
    cfg = Config.fromfile(REPO / config)
    cfg.model.backbone.init_cfg = None
    with torch.device('meta'):
        model = REGISTRY.build(cfg.model)
    arch = arch_of(config)
    layout = datpp_backbone_layouts[
        f"{'retinanet' if 'retinanet' in config else 'det_seg'}_{arch}"]
    checkpoint = release_checkpoint(model, layout)
    converted, info = convert_datpp_downstream(checkpoint)
    assert info['arch'] == arch and info['dataset_meta'] == dict(classes=['person', 'bicycle'])
    used = defaultdict(list)
    for key in layout:
        used[rename_key(key)[0]].append(key)
    assert all(len(keys) == 1 for keys in used.values())
    model.load_state_dict(converted, strict=True, assign=True)
    assert torch.equal(model.backbone.stages[1].blocks[0].attn.rpb,
                       checkpoint['state_dict']['backbone.stages.1.attns.0.rpb'])
    head_key = next(k for k in converted if not k.startswith(('backbone.', 'neck.')))
    assert torch.equal(converted[head_key], checkpoint['state_dict'][head_key])


@pytest.mark.parametrize('config', MODELS, ids=lambda c: Path(c).stem)
def test_predict_at_odd_size(config):
    predict(build_detector(config), 237, 301)


@pytest.mark.slow
def test_upgrade_tool(tmp_path, datpp_backbone_layouts):
    """The CLI converts a checkpoint and checks it against the config; a checkpoint of
    another model is refused with the keys named."""
    from mmdet.registry import MODELS as REGISTRY
    from mmengine.registry import init_default_scope

    import dat.adapters.mmdet  # noqa: F401
    init_default_scope('mmdet')
    config = 'configs/retinanet/retinanet_datpp-tiny_fpn_32xb2-amp-ms-crop-1x_coco.py'
    cfg = Config.fromfile(REPO / config)
    cfg.model.backbone.init_cfg = None
    with torch.device('meta'):
        model = REGISTRY.build(cfg.model)
    src = tmp_path / 'rtn_tiny_1x.pth'
    torch.save(release_checkpoint(model, datpp_backbone_layouts['retinanet_tiny']), src)
    tool = REPO / 'tools/model_converters/datpp_det_seg_upgrade.py'
    dst = tmp_path / 'out.pth'
    out = subprocess.run([sys.executable, str(tool), str(src), str(dst), '--config',
                          str(REPO / config)], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    assert 'DAT++ arch tiny, backbone outputs [1, 2, 3]; kept bbox_head, neck' in out.stdout
    saved = torch.load(dst, weights_only=True)
    assert saved['meta']['dataset_meta'] == dict(classes=['person', 'bicycle'])

    mask_rcnn = REPO / 'configs/mask_rcnn/mask-rcnn_datpp-tiny_fpn_32xb2-amp-ms-crop-1x_coco.py'
    out = subprocess.run([sys.executable, str(tool), str(src), str(tmp_path / 'x.pth'),
                          '--config', str(mask_rcnn)], capture_output=True, text=True, cwd=REPO)
    assert out.returncode != 0 and 'does not fit' in out.stderr and 'rpn_head' in out.stderr
    assert not (tmp_path / 'x.pth').exists()


@pytest.mark.slow
@pytest.mark.heavy
def test_dist_train_then_test(tmp_path):
    """A scaled-down DAT++ Mask R-CNN from the T++ recipe: tools/dist_train.sh with 2 CPU
    processes, then tools/test.py reports bbox and segm mAP."""
    classes = ('box', 'disk')
    make_coco(tmp_path / 'data', 4, classes)
    config = tmp_path / 'config.py'
    config.write_text(small_config_text(
        'configs/mask_rcnn/mask-rcnn_datpp-tiny_fpn_32xb2-amp-ms-crop-1x_coco.py',
        tmp_path / 'data', classes, backbone=MINI_PP_BACKBONE))
    work_dir = tmp_path / 'work'
    run(['bash', 'tools/dist_train.sh', str(config), '2', '--work-dir', str(work_dir),
         '--no-validate'], env=dict(PORT=str(free_port())))
    logged = [json.loads(line) for path in work_dir.glob('*/vis_data/scalars.json')
              for line in path.read_text().splitlines()]
    losses = [entry for entry in logged if 'loss' in entry]
    assert [entry['iter'] for entry in losses] == [1, 2, 3, 4]
    assert all(math.isfinite(entry['loss']) for entry in losses)
    assert Config.fromfile(str(config)).model.backbone.type == 'DATPlusPlus'

    out = run([sys.executable, 'tools/test.py', str(config), str(work_dir / 'epoch_2.pth'),
               '--work-dir', str(tmp_path / 'test')])
    reported = dict(re.findall(r'coco/(\w+_mAP): (-?[\d.]+)', out.splitlines()[-1]))
    assert set(reported) == {'bbox_mAP', 'segm_mAP'}, out[-2000:]
