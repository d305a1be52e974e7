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
