"""Simple mistakes end in one line that names the file and the problem, and a non-zero exit
status, in every tool: a config that does not exist, a checkpoint of random bytes, a
truncated checkpoint (and the visualiser's image that is too small)."""
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
CONFIG = 'configs/dat/dat-mini_1xb32_shapes.py'


@pytest.fixture(scope='module')
def bad(tmp_path_factory):
    root = tmp_path_factory.mktemp('bad')
    (root / 'random.pth').write_bytes(np.random.default_rng(0).bytes(5000))
    torch.save({'state_dict': {'w': torch.randn(10000)}}, root / 'good.pth')
    data = (root / 'good.pth').read_bytes()
    (root / 'truncated.pth').write_bytes(data[:len(data) // 2])
    cv2.imwrite(str(root / 'img.png'), np.full((40, 48, 3), 128, np.uint8))
    return dict(root=root, config=str(root / 'no_such_config.py'),
                random=str(root / 'random.pth'), truncated=str(root / 'truncated.pth'),
                img=str(root / 'img.png'))


REASONS = {
    'config': 'no such config: {path}',
    'random': '{path}: cannot be read as a checkpoint: it is not a PyTorch checkpoint',
    'truncated': '{path}: cannot be read as a checkpoint: it is truncated or damaged',
}


def one_line(text, case, path):
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert len(lines) == 1, text[-3000:]
    assert lines[0].startswith('error: ' + REASONS[case].format(path=path)), lines[0]


def run(cmd):
    env = {**os.environ, 'PYTHONPATH': str(REPO)}
    return subprocess.run([str(c) for c in cmd], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)


# (tool, command for a bad config, command for a bad checkpoint or None)
TOOLS = {
    'demo': (lambda b: [sys.executable, 'tools/demo/image_demo.py', b['img'], b['config']],
             lambda b, c: [sys.executable, 'tools/demo/image_demo.py', b['img'], CONFIG,
                           '--checkpoint', c]),
    'train': (lambda b: [sys.executable, 'tools/train.py', b['config']],
              lambda b, c: [sys.executable, 'tools/train.py', CONFIG, '--resume', c,
                            '--work-dir', b['root'] / 'work']),
    # tools/test.py: through test.sh (one process) and dist_test.sh (two)
    'test.sh': (lambda b: ['bash', 'tools/test.sh', b['config'], b['random']],
                lambda b, c: ['bash', 'tools/test.sh', CONFIG, c]),
    'dist_test.sh': (lambda b: ['bash', 'tools/dist_test.sh', b['config'], b['random'], '2'],
                     lambda b, c: ['bash', 'tools/dist_test.sh', CONFIG, c, '2']),
    'dist_train.sh': (lambda b: ['bash', 'tools/dist_train.sh', b['config'], '2'], None),
    'get_flops': (lambda b: [sys.executable, 'tools/analysis_tools/get_flops.py', b['config']],
                  None),
    'converter': (None, lambda b, c: [sys.executable, 'tools/model_converters/dat2mmpretrain.py',
                                      c, b['root'] / 'out.pth']),
}


@pytest.mark.slow
@pytest.mark.parametrize('tool', [t for t in TOOLS if TOOLS[t][0]])
def test_missing_config(tool, bad):
    result = run(TOOLS[tool][0](bad))
    assert result.returncode != 0
    one_line(result.stdout + result.stderr, 'config', bad['config'])


@pytest.mark.slow
@pytest.mark.parametrize('case', ['random', 'truncated'])
@pytest.mark.parametrize('tool', [t for t in TOOLS if TOOLS[t][1]])
def test_unreadable_checkpoint(tool, case, bad):
    result = run(TOOLS[tool][1](bad, bad[case]))
    assert result.returncode != 0
    one_line(result.stdout + result.stderr, case, bad[case])


# Tools with a main(argv): the SystemExit's message is the line printed on stderr.

def exit_message(main, argv):
    with pytest.raises(SystemExit) as error:
        main([str(a) for a in argv])
    assert error.value.code not in (0, None)
    return str(error.value.code)


def test_visualiser(bad, load_tool, tmp_path):
    main = load_tool('visualization/vis_deform_points.py').main
    out = ['--out', tmp_path / 'x.png']
    for case, argv in (('config', [bad['img'], bad['config']] + out),
                       ('random', [bad['img'], CONFIG, bad['random']] + out),
                       ('truncated', [bad['img'], CONFIG, bad['truncated']] + out)):
        one_line(exit_message(main, argv), case, bad[case])
    # an image (40 x 48 px) made smaller than the 32 px that DAT takes
    message = exit_message(main, [bad['img'], CONFIG, '--short-side', '16'] + out)
    assert message == (f"error: {bad['img']}, resized to (16, 19): input of size (16, 19) is "
                       'too small for DAT: both sides must be at least 32 pixels (patch stem '
                       '4, then three 2x downsamplings)')


def test_onnx_export(bad, load_tool, tmp_path):
    main = load_tool('deployment/pytorch2onnx.py').main
    out = ['--out', tmp_path / 'x.onnx']
    for case, argv in (('config', [bad['config']] + out),
                       ('random', [CONFIG, bad['random']] + out),
                       ('truncated', [CONFIG, bad['truncated'], '--backbone'] + out)):
        one_line(exit_message(main, argv), case, bad[case])


def test_benchmark(bad, load_tool):
    main = load_tool('analysis_tools/benchmark.py').main
    one_line(exit_message(main, ['--config', bad['config'], '--device', 'cpu']), 'config',
             bad['config'])


# Data that is not there: the path, the config key that sets it, the doc of the layout.

CUSTOM_CONFIG = """
_base_ = ['{repo}/configs/mask_rcnn/mask-rcnn_dat-tiny_fpn_amp-1x_coco.py']
metainfo = dict(classes=('box', 'disk'))
train_dataloader = dict(dataset=dict(data_root='{root}', metainfo=metainfo))
"""

# (config, the data root's state, the missing path under it for training and for testing,
# its key, the doc)
MISSING_DATA = {
    'cls': ('configs/dat/dat-tiny_8xb128-amp_in1k.py', 'absent', ('', ''), 'data_root',
            'docs/classification.md'),
    'det': ('configs/mask_rcnn/mask-rcnn_dat-tiny_fpn_amp-1x_coco.py', 'empty',
            ('annotations/instances_train2017.json', 'annotations/instances_val2017.json'),
            'ann_file', 'docs/detection.md'),
    'seg': ('configs/upernet/upernet_dat-tiny_8xb2-amp-160k_ade20k-512x512.py', 'empty',
            ('images/training', 'images/validation'), 'data_prefix.img_path',
            'docs/segmentation.md'),
    'custom': (None, 'absent', ('', None), 'data_root', 'docs/custom_dataset.md'),
}


def missing_data_line(path, key, doc, loader='train_dataloader'):
    return (f'error: {path}: no such file or directory (set by {loader}.dataset.{key}; '
            f'see {doc} for how to lay out the data)')


@pytest.mark.parametrize('family', MISSING_DATA)
def test_missing_data_names_path_key_and_doc(family, tmp_path, monkeypatch):
    """dat.runner_utils.check_data, which tools/train.py (train and val loaders) and
    tools/test.py (the test loader) call before the Runner is built."""
    from dat.cli import load_config
    from dat.runner_utils import check_data
    config, state, missing, key, doc = MISSING_DATA[family]
    root = tmp_path / 'data'
    if state == 'empty':
        root.mkdir()
    if config is None:
        config = tmp_path / 'custom.py'
        config.write_text(CUSTOM_CONFIG.format(repo=REPO, root=root))
    options = {f'{loader}.dataset.data_root': str(root)
               for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')}
    cfg = load_config(str(config), {} if family == 'custom' else options)
    for loaders, loader, under in ((['train_dataloader', 'val_dataloader'], 'train_dataloader',
                                    missing[0]), (['test_dataloader'], 'test_dataloader',
                                                  missing[1])):
        if under is None:
            continue  # the custom config sets the training data only
        path = str(root / under) if under else str(root)
        with pytest.raises(SystemExit) as error:
            check_data(cfg, loaders)
        assert str(error.value) == missing_data_line(path, key, doc, loader)
    # ranks other than 0 exit quietly; DAT_TRACEBACK=1 raises the error itself
    monkeypatch.setenv('RANK', '1')
    with pytest.raises(SystemExit) as error:
        check_data(cfg)
    assert error.value.code == 1
    monkeypatch.setenv('RANK', '0')
    monkeypatch.setenv('DAT_TRACEBACK', '1')
    with pytest.raises(FileNotFoundError, match='no such file or directory'):
        check_data(cfg)


def test_data_check_only_exits_0_when_the_data_is_there(tmp_path, monkeypatch):
    from dat.cli import load_config
    from dat.runner_utils import check_data
    cfg = load_config('configs/dat/dat-tiny_8xb128-amp_in1k.py',
                      {f'{loader}.dataset.data_root': str(tmp_path)
                       for loader in ('train_dataloader', 'val_dataloader')})
    check_data(cfg)  # ImageNet reads its root's folders itself: the root is what is checked
    monkeypatch.setenv('DAT_CHECK_ONLY', '1')
    with pytest.raises(SystemExit) as error:
        check_data(cfg)
    assert error.value.code == 0


@pytest.mark.slow
@pytest.mark.parametrize('tool', ['train.py', 'slurm_test.sh'])
def test_missing_data_is_one_line(tool, bad, tmp_path):
    """tools/train.py, and tools/test.py as slurm_test.sh runs it before srun (a stand-in
    that must not be called)."""
    root = tmp_path / 'no_imagenet'
    options = ['--cfg-options'] + [f'{loader}.dataset.data_root={root}' for loader in
                                   ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    config = 'configs/dat/dat-tiny_8xb128-amp_in1k.py'
    if tool == 'train.py':
        cmd = [sys.executable, 'tools/train.py', config, '--work-dir', tmp_path / 'work']
        loader = 'train_dataloader'
    else:
        torch.save({'state_dict': {'w': torch.zeros(1)}}, tmp_path / 'ckpt.pth')
        cmd = ['bash', 'tools/slurm_test.sh', 'part', 'job', config, tmp_path / 'ckpt.pth']
        loader = 'test_dataloader'
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    (bin_dir / 'srun').write_text(f'#!/bin/sh\ntouch {tmp_path}/srun_called\n')
    (bin_dir / 'srun').chmod(0o755)
    result = subprocess.run(
        [str(c) for c in cmd + options], cwd=REPO, capture_output=True, text=True, timeout=600,
        env={**os.environ, 'PYTHONPATH': str(REPO), 'PATH': f'{bin_dir}:{os.environ["PATH"]}'})
    assert result.returncode == 1
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert lines == [missing_data_line(root, 'data_root', 'docs/classification.md', loader)]
    assert not (tmp_path / 'srun_called').exists()
