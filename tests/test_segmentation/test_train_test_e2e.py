"""End to end on a generated ADE20K-layout dataset, with the repo's tools: a scaled-down
UperNet (the DAT-T recipe file with a mini DAT) trains through tools/dist_train.sh with 2
CPU processes, tools/test.py evaluates its checkpoint with the config's IoU metric
(single-scale and --tta multi-scale flip), and tools/demo/image_demo.py draws the
coloured overlay from the checkpoint."""
import os
import re
import subprocess
import sys

import mmcv
import numpy as np
import pytest
from mmengine.config import Config

from seg_utils import make_ade_layout, write_mini_config

MAX_ITERS = 4


def run(cmd, cwd, **env):
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=400,
                            env=dict(os.environ, **env))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope='module')
def trained(tmp_path_factory, repo_root):
    """(config, checkpoint, data root) after MAX_ITERS iterations on 2 processes."""
    tmp = tmp_path_factory.mktemp('seg_e2e')
    data_root = make_ade_layout(tmp / 'ade')
    config = write_mini_config(tmp / 'upernet_mini.py', repo_root, data_root, MAX_ITERS)
    work_dir = tmp / 'work'
    result = run(['bash', 'tools/dist_train.sh', str(config), '2', '--work-dir',
                  str(work_dir)], repo_root, PORT=str(29500 + os.getpid() % 1000))
    log = result.stdout + result.stderr
    return config, work_dir / f'iter_{MAX_ITERS}.pth', data_root, log


@pytest.mark.slow
def test_dist_train_two_processes(trained):
    config, checkpoint, _, log = trained
    assert checkpoint.is_file()
    losses = re.findall(r'Iter\(train\) \[\s*(\d+)/\d+\].*? loss: ([\d.]+)', log)
    assert [int(i) for i, _ in losses] == list(range(1, MAX_ITERS + 1))
    assert all(np.isfinite(float(v)) for _, v in losses)
    assert 'decode.loss_ce' in log and 'aux.loss_ce' in log  # UPerHead + FCN auxiliary head
    # 2 validation images split over the 2 ranks; the metric is gathered on rank 0.
    assert re.search(r'Iter\(val\) \[1/1\].*mIoU: [\d.]+', log)


def parse_metrics(stdout):
    line = stdout.strip().splitlines()[-1]
    return {k: float(v) for k, v in re.findall(r'(\w+): ([\d.]+)', line)}


@pytest.mark.slow
def test_tools_test_reports_miou(trained, repo_root, tmp_path):
    config, checkpoint, _, _ = trained
    result = run([sys.executable, 'tools/test.py', str(config), str(checkpoint),
                  '--work-dir', str(tmp_path)], repo_root)
    metrics = parse_metrics(result.stdout)
    assert set(metrics) == {'aAcc', 'mIoU', 'mAcc'}
    assert 0 <= metrics['mIoU'] <= 100
    # IoUMetric's per-class table, over ADE20K's 150 classes.
    assert re.search(r'\|\s+wall\s+\|', result.stdout + result.stderr)


@pytest.mark.slow
def test_tools_test_tta(trained, repo_root, tmp_path):
    config, checkpoint, _, _ = trained
    result = run([sys.executable, 'tools/test.py', str(config), str(checkpoint),
                  '--work-dir', str(tmp_path), '--tta'], repo_root)
    assert 0 <= parse_metrics(result.stdout)['mIoU'] <= 100
    used = Config.fromfile(tmp_path / config.name)  # the Runner's dump of what it ran
    assert used.model.type == 'SegTTAModel' and used.model.module.type == 'EncoderDecoder'
    assert used.test_dataloader.dataset.pipeline[1].type == 'TestTimeAug'


@pytest.mark.slow
def test_demo_writes_overlay(trained, repo_root, tmp_path):
    config, checkpoint, data_root, _ = trained
    img = data_root / 'images' / 'validation' / 'ADE_valid_00000001.jpg'
    out = tmp_path / 'overlay.png'
    result = run([sys.executable, 'tools/demo/image_demo.py', str(img), str(config),
                  str(checkpoint), '--out-file', str(out)], repo_root)
    assert 'predicted classes (share of pixels)' in result.stdout
    drawing, image = mmcv.imread(str(out)), mmcv.imread(str(img))
    assert drawing.shape == image.shape
    assert np.abs(drawing.astype(int) - image).mean() > 5  # the mask is drawn over it
