"""The classification branch of tools/demo/image_demo.py: top-5 classes with scores."""
import re
import sys

import cv2
import numpy as np
import pytest
import torch
from mini_configs import TINY_CLASSIFIER_CONFIG

CLASSES = [f'class_{i}' for i in range(7)] + ['zebra']


@pytest.fixture(scope='module')
def demo(load_tool):
    module = load_tool('demo/image_demo.py')

    def run(monkeypatch, *argv):
        monkeypatch.setattr(sys, 'argv', ['image_demo.py', *map(str, argv)])
        module.main()
    return run


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    from mmengine.config import Config
    from mmpretrain import get_model

    root = tmp_path_factory.mktemp('demo')
    (root / 'mini.py').write_text(TINY_CLASSIFIER_CONFIG)
    model = get_model(Config.fromfile(root / 'mini.py'))
    state = model.state_dict()
    # logits = the bias: zebra, then class_6, class_5, ...
    state['head.fc.weight'] = torch.zeros(8, 64)
    state['head.fc.bias'] = torch.tensor([0.0, 1, 2, 3, 4, 5, 6, 9])
    torch.save({'state_dict': state, 'meta': {'dataset_meta': {'classes': CLASSES}}},
               root / 'mini.pth')
    cv2.imwrite(str(root / 'img.jpg'),
                np.random.default_rng(0).integers(0, 255, (90, 120, 3), np.uint8))
    return root


def top5(text):
    # Not anchored at the line start: the inferencer's progress bar may precede line 1.
    return re.findall(r'(\d): ([^\n]+?) \(class (\d+)\) score ([\d.]+)$', text, re.M)


def test_top5_with_checkpoint(demo, files, monkeypatch, capsys):
    demo(monkeypatch, files / 'img.jpg', files / 'mini.py', '--checkpoint', files / 'mini.pth')
    rows = top5(capsys.readouterr().out)
    assert [r[0] for r in rows] == ['1', '2', '3', '4', '5']
    assert rows[0][1:3] == ('zebra', '7')  # the checkpoint's head and class names are used
    assert [r[1] for r in rows[1:]] == ['class_6', 'class_5', 'class_4', 'class_3']
    expected = torch.tensor([0.0, 1, 2, 3, 4, 5, 6, 9]).softmax(0).sort(descending=True)[0]
    assert [float(r[3]) for r in rows] == pytest.approx(expected[:5].tolist(), abs=1e-4)


def test_model_name_random_weights(demo, files, monkeypatch, capsys):
    demo(monkeypatch, files / 'img.jpg', 'dat-tiny_8xb128-amp_in1k')
    out = capsys.readouterr().out
    assert 'random weights' in out
    rows = top5(out)
    assert len(rows) == 5 and all(0 <= int(r[2]) < 1000 for r in rows)
    assert sum(float(r[3]) for r in rows) < 1


def test_checkpoint_of_another_model(demo, files, monkeypatch, tmp_path):
    other = tmp_path / 'other.pth'
    torch.save({'state_dict': {'head.fc.weight': torch.zeros(3, 64)}}, other)
    with pytest.raises(SystemExit, match='does not fit'):
        demo(monkeypatch, files / 'img.jpg', files / 'mini.py', '--checkpoint', other)


def test_unknown_name(demo, files, monkeypatch):
    with pytest.raises(SystemExit, match='neither a config file nor a model name'):
        demo(monkeypatch, files / 'img.jpg', 'dat-huge_in1k')
