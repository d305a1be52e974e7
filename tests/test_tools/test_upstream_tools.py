"""Our shipped configs under the OpenMMLab tools themselves: ``tools/train.py`` and
``tools/test.py`` of the installed mmpretrain, mmdet and mmseg (``<package>/.mim/tools``).

The AMP recipes set nothing that a plain ``OptimWrapper`` rejects, so on a CPU the one
override ``--cfg-options optim_wrapper.type=OptimWrapper`` runs them in fp32 (AMP needs a
GPU); on a GPU they run unchanged with the releases' AMP (fp16, dynamic loss scale). The
slow tests train one iteration of a classification, a detection and a segmentation config
(unchanged files; the other options only point them at tiny generated data, shrink the
images and skip the ImageNet checkpoint) and test the checkpoint it writes.
"""
import importlib.util
import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mmengine.config import Config
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted(str(p.relative_to(REPO)) for p in REPO.glob('configs/*/*.py'))
FP32 = 'optim_wrapper.type=OptimWrapper'


def test_every_config_takes_the_fp32_override():
    """Every shipped config's optimizer wrapper builds as a plain OptimWrapper with the one
    override: no AMP-only argument (loss_scale, dtype) is left for it to reject."""
    from mmengine.optim import AmpOptimWrapper, OptimWrapper

    accepted = set(inspect.signature(OptimWrapper.__init__).parameters) - {'self', 'kwargs'}
    # what build_optim_wrapper takes out before it calls the wrapper
    accepted |= {'type', 'constructor', 'paramwise_cfg', 'optimizer', '_scope_'}
    amp = []
    for path in CONFIGS:
        cfg = Config.fromfile(REPO / path)
        if 'optim_wrapper' not in cfg:
            continue
        wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
        if wrapper == 'AmpOptimWrapper':
            amp.append(path)
            # the release's scaler: torch's GradScaler() (dynamic), AmpOptimWrapper's default
            assert cfg.optim_wrapper.get('loss_scale', 'dynamic') == 'dynamic', path
        cfg.merge_from_dict({'optim_wrapper.type': 'OptimWrapper'})
        extra = set(cfg.optim_wrapper) - accepted
        assert not extra, f'{path}: OptimWrapper would reject {sorted(extra)}'
    assert inspect.signature(AmpOptimWrapper.__init__).parameters['loss_scale'].default \
        == 'dynamic'
    assert len(amp) > 30, amp  # the AMP recipes are checked, not skipped


def upstream_tool(package: str, name: str) -> str:
    module = importlib.import_module(package)
    path = Path(module.__file__).parent / '.mim' / 'tools' / name
    assert path.is_file(), path
    return str(path)


def run(cmd, cwd):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO)] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p]),
        OMP_NUM_THREADS='1')
    result = subprocess.run([sys.executable] + cmd, cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=900)
    log = result.stdout + result.stderr
    assert result.returncode == 0, f'{" ".join(cmd)}\n{log[-5000:]}'
    return log


def load_helpers(relpath: str):
    """A helper module of another test folder (generated datasets)."""
    path = REPO / 'tests' / relpath
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def options(*pairs):
    return ['--cfg-options', FP32, 'model.backbone.init_cfg=None',
            'default_hooks.logger.interval=1', *pairs]


def loaders(**settings):
    return [f'{loader}_dataloader.{key}={value}' for loader in ('train', 'val', 'test')
            for key, value in dict(num_workers=0, persistent_workers=False, **settings).items()]


@pytest.mark.slow
def test_mmpretrain_tools_train_and_test(tmp_path):
    config = str(REPO / 'configs/dat/dat-tiny_8xb128-amp_in1k.py')
    root = tmp_path / 'imagenet'
    rng = np.random.default_rng(0)
    for split in ('train', 'val'):
        (root / split).mkdir(parents=True)
        (root / 'meta').mkdir(exist_ok=True)
        lines = []
        for i in range(2):
            pixels = rng.integers(0, 255, (64 + 8 * i, 80, 3), np.uint8)
            Image.fromarray(pixels).save(root / split / f'{i}.png')
            lines.append(f'{i}.png {7 * i}')
        (root / 'meta' / f'{split}.txt').write_text('\n'.join(lines) + '\n')
    data = options(*loaders(batch_size=2, **{'dataset.data_root': root}),
                   'train_cfg.max_epochs=1')
    log = run([upstream_tool('mmpretrain', 'train.py'), config, '--work-dir', 'work', *data],
              tmp_path)
    assert 'Epoch(train) [1][1/1]' in log and 'OptimWrapper' in log
    assert re.search(r'Epoch\(val\) \[1\]\[1/1\]\s+accuracy/top1: [\d.]+', log), log[-2000:]
    checkpoint = tmp_path / 'work' / 'epoch_1.pth'
    assert checkpoint.is_file()
    log = run([upstream_tool('mmpretrain', 'test.py'), config, str(checkpoint), '--work-dir',
               'test', *data], tmp_path)
    assert re.search(r'accuracy/top1: [\d.]+\s+accuracy/top5: [\d.]+', log), log[-2000:]


@pytest.mark.slow
def test_mmdet_tools_train_and_test(tmp_path):
    config = str(REPO / 'configs/retinanet/retinanet_dat-tiny_fpn_amp-1x_coco.py')
    det = load_helpers('test_detection/det_helpers.py')
    from mmdet.datasets import CocoDataset
    classes = CocoDataset.METAINFO['classes']
    # objects of COCO's first two classes; the annotation file lists all 80, as COCO's does
    ann_file = det.make_coco(tmp_path / 'coco', 2, classes=classes[:2], size=(96, 128))
    coco = json.loads(ann_file.read_text())
    coco['categories'] = [dict(id=i + 1, name=name) for i, name in enumerate(classes)]
    ann_file.write_text(json.dumps(coco))
    data = options(*loaders(batch_size=2, **{
        'dataset.data_root': f'{tmp_path / "coco"}/', 'dataset.ann_file': ann_file,
        'dataset.data_prefix.img': 'images/'}),
        'train_dataloader.dataset.pipeline.2.scale=(128,96)',
        'val_dataloader.dataset.pipeline.1.scale=(128,96)',
        'test_dataloader.dataset.pipeline.1.scale=(128,96)',
        f'val_evaluator.ann_file={ann_file}', f'test_evaluator.ann_file={ann_file}',
        'train_cfg.max_epochs=1',
        'model.test_cfg.score_thr=0.0')  # boxes to score after one iteration
    log = run([upstream_tool('mmdet', 'train.py'), config, '--work-dir', 'work', *data],
              tmp_path)
    assert 'Epoch(train) [1][1/1]' in log and 'loss_cls' in log
    assert re.search(r'coco/bbox_mAP: -?[\d.]+', log), log[-2000:]
    checkpoint = tmp_path / 'work' / 'epoch_1.pth'
    log = run([upstream_tool('mmdet', 'test.py'), config, str(checkpoint), '--work-dir', 'test',
               *data], tmp_path)
    assert re.search(r'coco/bbox_mAP: -?[\d.]+', log), log[-2000:]


@pytest.mark.slow
def test_mmseg_tools_train_and_test(tmp_path):
    config = str(REPO / 'configs/sem_fpn/fpn_dat-tiny_8xb2-amp-80k_ade20k-512x512.py')
    seg = load_helpers('test_segmentation/seg_utils.py')
    root = seg.make_ade_layout(tmp_path / 'ade', num_train=2, num_val=1)
    data = options(*loaders(**{'dataset.data_root': root}),
                   'train_dataloader.batch_size=2',
                   'train_dataloader.dataset.pipeline.2.scale=(128,64)',
                   'train_dataloader.dataset.pipeline.3.crop_size=(64,64)',
                   'model.data_preprocessor.size=(64,64)',
                   'val_dataloader.dataset.pipeline.1.scale=(128,64)',
                   'test_dataloader.dataset.pipeline.1.scale=(128,64)',
                   'train_cfg.max_iters=1', 'train_cfg.val_interval=1',
                   'default_hooks.checkpoint.interval=1')
    log = run([upstream_tool('mmseg', 'train.py'), config, '--work-dir', 'work', *data],
              tmp_path)
    assert re.search(r'Iter\(train\) \[1/1\].*loss', log), log[-2000:]
    assert re.search(r'Iter\(val\) \[1/1\].*mIoU: [\d.]+', log), log[-2000:]
    checkpoint = tmp_path / 'work' / 'iter_1.pth'
    log = run([upstream_tool('mmseg', 'test.py'), config, str(checkpoint), '--work-dir', 'test',
               *data], tmp_path)
    assert re.search(r'mIoU: [\d.]+', log), log[-2000:]
