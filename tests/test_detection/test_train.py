"""Training the detectors of our recipes, scaled down, on generated COCO-format data.

- tools/dist_train.sh with 2 CPU processes (gloo) trains Mask R-CNN and RetinaNet with a
  mini DAT for 4 iterations (2 epochs of 4 images, batch 1 per process); the logged losses
  are finite; tools/test.py then reports mmdet's CocoMetric bbox (and segm) mAP, and the
  image demo draws the Mask R-CNN detections.
- In-process, a mini RetinaNet's loss falls clearly within 25 iterations on one easy class.
"""
import json
import math
import os
import random
import re
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from det_helpers import REPO, make_coco, small_config_text

CLASSES = ('box', 'disk')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def run(args, **kwargs):
    env = dict(os.environ, OMP_NUM_THREADS='1', **kwargs.pop('env', {}))
    result = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600,
                            env=env, **kwargs)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return result.stdout


@pytest.mark.slow
@pytest.mark.heavy
@pytest.mark.parametrize('recipe,metrics', [
    ('configs/mask_rcnn/mask-rcnn_dat-tiny_fpn_amp-1x_coco.py', ('bbox', 'segm')),
    ('configs/retinanet/retinanet_dat-tiny_fpn_amp-1x_coco.py', ('bbox', )),
], ids=['mask_rcnn', 'retinanet'])
def test_dist_train_then_test(tmp_path, recipe, metrics):
    make_coco(tmp_path / 'data', 4, CLASSES)
    config = tmp_path / 'config.py'
    config.write_text(small_config_text(recipe, tmp_path / 'data', CLASSES))
    work_dir = tmp_path / 'work'
    run(['bash', 'tools/dist_train.sh', str(config), '2', '--work-dir', str(work_dir),
         '--no-validate'], env=dict(PORT=str(free_port())))

    logged = [json.loads(line) for path in work_dir.glob('*/vis_data/scalars.json')
              for line in path.read_text().splitlines()]
    losses = [entry for entry in logged if 'loss' in entry]
    assert [entry['iter'] for entry in losses] == [1, 2, 3, 4]
    loss_names = {k for k in losses[0] if k.startswith('loss')}
    expected = {'loss_rpn_cls', 'loss_cls', 'loss_mask'} if 'segm' in metrics else {'loss_cls'}
    assert expected <= loss_names
    assert all(math.isfinite(entry[k]) for entry in losses for k in loss_names)
    checkpoint = work_dir / 'epoch_2.pth'
    assert checkpoint.is_file()

    out = run([sys.executable, 'tools/test.py', str(config), str(checkpoint), '--work-dir',
               str(tmp_path / 'test')])
    reported = dict(re.findall(r'coco/(\w+_mAP): (-?[\d.]+)', out.splitlines()[-1]))
    assert set(reported) == {f'{m}_mAP' for m in metrics}, out[-2000:]
    assert all(0.0 <= float(v) <= 1.0 for v in reported.values())

    if 'segm' in metrics:
        image = tmp_path / 'data' / 'images' / '0001.png'
        out_file = tmp_path / 'demo.jpg'
        out = run([sys.executable, 'tools/demo/image_demo.py', str(image), str(config),
                   str(checkpoint), '--out-file', str(out_file), '--score-thr', '0'])
        assert 'detections with score >= 0' in out
        from PIL import Image
        assert Image.open(out_file).size == Image.open(image).size


def test_loss_falls_on_one_easy_class(tmp_path):
    """A mini RetinaNet from our recipe, with the recipe's AdamW and parameter groups at
    lr 1e-3: the mean loss of the last 5 of 25 iterations is below half of the first 3."""
    from mmdet.registry import DATASETS, MODELS
    from mmengine.dataset import pseudo_collate
    from mmengine.optim import build_optim_wrapper

    import dat.adapters.mmdet  # noqa: F401
    init_default_scope('mmdet')
    make_coco(tmp_path / 'data', 8, classes=('box', ), size=(128, 128), max_objects=2)
    config = tmp_path / 'config.py'
    config.write_text(small_config_text('configs/retinanet/retinanet_dat-tiny_fpn_amp-1x_coco.py',
                                        tmp_path / 'data', ('box', ), scale=(128, 128)))
    cfg = Config.fromfile(str(config))
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    optim = build_optim_wrapper(model, dict(
        type='OptimWrapper', optimizer=dict(cfg.optim_wrapper.optimizer, lr=1e-3),
        paramwise_cfg=cfg.optim_wrapper.paramwise_cfg))
    model.train()
    losses = []
    for step in range(25):
        batch = pseudo_collate([dataset[(2 * step + k) % len(dataset)] for k in range(2)])
        losses.append(model.train_step(batch, optim)['loss'].item())
    assert all(math.isfinite(v) for v in losses)
    first, last = np.mean(losses[:3]), np.mean(losses[-5:])
    assert last < 0.5 * first, [round(v, 3) for v in losses]
