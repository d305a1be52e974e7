"""The segmentation branch of tools/demo/image_demo.py with an ADE20K config and random
weights: class names and palette come from the config's dataset."""
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest

CONFIG = 'configs/upernet/upernet_dat-tiny_8xb2-amp-160k_ade20k-512x512.py'


@pytest.mark.slow
def test_ade20k_names_and_colours(repo_root, tmp_path):
    from mmseg.datasets import ADE20KDataset
    classes = ADE20KDataset.METAINFO['classes']
    palette = np.array(ADE20KDataset.METAINFO['palette'], np.float64)  # RGB

    img = np.zeros((96, 128, 3), np.uint8)  # BGR: a flat left half, a noisy right half
    img[:, :64] = (40, 160, 30)
    img[:, 64:] = np.random.default_rng(0).integers(0, 255, (96, 64, 3))
    cv2.imwrite(str(tmp_path / 'img.png'), img)
    out = tmp_path / 'overlay.png'
    result = subprocess.run(
        [sys.executable, 'tools/demo/image_demo.py', str(tmp_path / 'img.png'), CONFIG,
         '--out-file', str(out)], cwd=repo_root, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'weights is None' not in result.stderr and 'cityscapes' not in result.stderr

    line = next(t for t in result.stdout.splitlines() if t.startswith('predicted classes'))
    printed = re.findall(r'([^:,]+) \((\d+)\): [\d.]+%', line.split(': ', 1)[1])
    assert len(printed) > 1
    assert all(name.strip() == classes[int(i)].strip() for name, i in printed), line

    # The overlay is 0.2 image + 0.8 palette colour of the predicted class (mmseg's
    # visualizer, opacity 0.8): in the flat half, almost every pixel is such a blend.
    overlay = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)[:, :64].reshape(-1, 3)
    flat = np.array((30, 160, 40), np.float64)  # RGB of the flat half
    blends = 0.2 * flat + 0.8 * palette
    distance = np.abs(overlay[:, None, :].astype(np.float64) - blends[None]).max(-1)
    nearest = distance.argmin(1)
    matched = distance.min(1) <= 2
    assert matched.mean() > 0.8
    assert len(set(nearest[matched].tolist())) > 1  # more than one class colour
