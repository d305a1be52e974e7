"""docs/custom_dataset.md, command by command.

The guide's config files are written where its comments name them, a tiny dataset is
generated in the layouts it describes, and its shell commands run in order in a project
folder outside the repository (``tools`` links to the repository's). A DAT-T checkpoint of
seeded random weights, in the converted format, stands in for the ImageNet one. The train and
test commands get ``--cfg-options`` that shrink the image sizes and the schedule to a couple
of iterations; ``tensorboard`` is started, asked for its runs and scalars, and stopped.
"""
import importlib.util
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dat.cli import load_config
from dat.models import DAT
from dat.models.checkpoint import read_checkpoint

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / 'docs' / 'custom_dataset.md'
DET = 'my_configs/mask-rcnn_dat-tiny_fpn_my-coco.py'
SEG = 'my_configs/upernet_dat-tiny_my-seg.py'
CHECKPOINT = 'checkpoints/dat-tiny_in1k.pth'


def doc_blocks():
    """(language, text) of every fenced code block of the guide, in order."""
    return re.findall(r'^```(\w+)\n(.*?)^```', DOC.read_text(), re.M | re.S)


def make_coco(root: Path, num_images: int, seed: int):
    path = REPO / 'tests' / 'test_detection' / 'det_helpers.py'
    spec = importlib.util.spec_from_file_location('det_helpers', path)
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    helpers.make_coco(root, num_images, classes=('box', 'disk'), size=(128, 160), seed=seed)


def make_seg(root: Path, split: str, num_images: int, seed: int):
    """images/SPLIT/*.jpg and masks/SPLIT/*.png: a box (class 1) and a disk (class 2) on
    background (0), with a strip of ignored pixels (255)."""
    rng = np.random.default_rng(seed)
    (root / 'images' / split).mkdir(parents=True)
    (root / 'masks' / split).mkdir(parents=True)
    for i in range(num_images):
        h, w = 64 + 8 * i, 96
        mask = np.zeros((h, w), np.uint8)
        y, x = rng.integers(4, 20, 2)
        mask[y:y + 24, x:x + 30] = 1
        yy, xx = np.mgrid[:h, :w]
        mask[(yy - h * 0.6) ** 2 + (xx - 70) ** 2 <= 12 ** 2] = 2
        mask[:, :2] = 255
        colours = np.array([[20, 20, 20], [220, 220, 220], [220, 60, 60]], np.uint8)
        image = colours[np.minimum(mask, 2)] + rng.integers(0, 25, (h, w, 3)).astype(np.uint8)
        Image.fromarray(image).save(root / 'images' / split / f'{i:04d}.jpg')
        Image.fromarray(mask).save(root / 'masks' / split / f'{i:04d}.png')


def index_of(pipeline, kind):
    return next(i for i, step in enumerate(pipeline) if step['type'] == kind)


def shrink_options(project: Path):
    """--cfg-options for each config of the guide: small images, 2 iterations."""
    common = ['default_hooks.logger.interval=1']
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        common += [f'{loader}.num_workers=0', f'{loader}.persistent_workers=False']
    det = load_config(str(project / DET))  # applies dat::, as our tools do
    options = {DET: common + [
        'train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
        'default_hooks.checkpoint.interval=1',
        'model.train_cfg.rpn_proposal.max_per_img=200', 'model.train_cfg.rcnn.sampler.num=64',
        'model.test_cfg.rpn.max_per_img=100']}
    options[DET].append('train_dataloader.dataset.pipeline.'
                        f'{index_of(det.train_dataloader.dataset.pipeline, "Resize")}'
                        '.scale=(160,128)')
    for loader in ('val_dataloader', 'test_dataloader'):
        options[DET].append(f'{loader}.dataset.pipeline.'
                            f'{index_of(det[loader].dataset.pipeline, "Resize")}'
                            '.scale=(160,128)')
    seg = load_config(str(project / SEG))
    train = seg.train_dataloader.dataset.pipeline
    options[SEG] = common + [
        'train_cfg.max_iters=2', 'train_cfg.val_interval=2',
        'default_hooks.checkpoint.interval=2', 'model.data_preprocessor.size=(64,64)',
        f'train_dataloader.dataset.pipeline.{index_of(train, "RandomResize")}.scale=(128,64)',
        f'train_dataloader.dataset.pipeline.{index_of(train, "RandomCrop")}.crop_size=(64,64)']
    for loader in ('val_dataloader', 'test_dataloader'):
        options[SEG].append(f'{loader}.dataset.pipeline.'
                            f'{index_of(seg[loader].dataset.pipeline, "Resize")}'
                            '.scale=(128,64)')
    return options


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def get_json(url, timeout=2):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def run_tensorboard(command, project, env):
    """Start the guide's tensorboard command, wait until it lists 2 runs, return the scalar
    tags of each run, stop it."""
    port = free_port()
    server = subprocess.Popen(shlex.split(command) + ['--port', str(port)], cwd=project,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.stdout.read().decode()[-3000:]
            assert time.monotonic() < deadline, 'tensorboard did not list the runs in 120 s'
            try:
                if len(get_json(f'http://localhost:{port}/data/runs')) >= 2:
                    break
            except OSError:
                pass
            time.sleep(1)
        return get_json(f'http://localhost:{port}/data/plugin/scalars/tags', timeout=30)
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope='module')
def guide(tmp_path_factory):
    """Runs the guide. Returns the project folder, each command's output and the scalar
    tags that tensorboard serves."""
    project = tmp_path_factory.mktemp('my_project')
    (project / 'tools').symlink_to(REPO / 'tools')
    configs = [text for lang, text in doc_blocks() if lang == 'python']
    for text in configs:
        path = project / re.match(r'# (\S+\.py)\n', text).group(1)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert {DET, SEG} <= {str(p.relative_to(project)) for p in project.glob('my_configs/*')}

    make_coco(project / 'data/my_coco/train', 4, seed=0)
    make_coco(project / 'data/my_coco/val', 2, seed=1)
    make_seg(project / 'data/my_seg', 'train', 4, seed=0)
    make_seg(project / 'data/my_seg', 'val', 2, seed=1)
    torch.manual_seed(0)
    backbone = DAT('tiny').state_dict()
    state = {f'backbone.{k}': v for k, v in backbone.items()}
    state.update({'head.fc.weight': torch.randn(1000, 768) * 0.02,
                  'head.fc.bias': torch.zeros(1000)})
    (project / 'checkpoints').mkdir()
    torch.save(dict(state_dict=state), project / CHECKPOINT)

    env = {**os.environ, 'PYTHONPATH': str(REPO), 'OMP_NUM_THREADS': '1',
           'PATH': f'{os.path.dirname(sys.executable)}{os.pathsep}{os.environ["PATH"]}'}
    options = shrink_options(project)
    outputs, tags = {}, None
    commands = [line for lang, text in doc_blocks() if lang == 'bash'
                for line in text.splitlines() if line.strip() and not line.startswith('#')]
    for command in commands:
        if command.startswith('tensorboard '):
            tags = run_tensorboard(command, project, env)
            continue
        config = shlex.split(command)[2]
        full = f'{command} --cfg-options {shlex.join(options[config])}'
        result = subprocess.run(['bash', '-c', full], cwd=project, env=env,
                                capture_output=True, text=True)
        assert result.returncode == 0, \
            f'{full}\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}'
        outputs[command] = result.stdout + result.stderr
    return dict(project=project, commands=commands, outputs=outputs, tags=tags,
                backbone=backbone)


def trained_checkpoint(project, config):
    work_dir = project / 'work_dirs' / Path(config).stem
    return read_checkpoint(Path((work_dir / 'last_checkpoint').read_text().strip()))


def assert_backbone_from_imagenet_checkpoint(state, backbone):
    """A couple of warm-up steps move the loaded weights by far less than 1e-4 (another
    initialisation would differ by about 0.02)."""
    for key, value in backbone.items():
        assert (state[f'backbone.{key}'] - value).abs().max() < 1e-4, key


def outputs_of(guide, tool, config):
    return next(out for command, out in guide['outputs'].items()
                if command.startswith(f'python tools/{tool}.py {config}'))


@pytest.mark.slow
def test_guide_runs_every_command(guide):
    assert [c.split()[:3] for c in guide['commands']] == [
        ['python', 'tools/train.py', DET], ['python', 'tools/test.py', DET],
        ['python', 'tools/train.py', SEG], ['python', 'tools/test.py', SEG],
        ['tensorboard', '--logdir', 'work_dirs']]


@pytest.mark.slow
def test_detector_fine_tunes_on_coco_format_data(guide):
    # 4 images, batch 2: 2 iterations, then validation with the COCO metric
    assert 'Epoch(train) [1][2/2]' in outputs_of(guide, 'train', DET)
    checkpoint = trained_checkpoint(guide['project'], DET)
    assert_backbone_from_imagenet_checkpoint(checkpoint['state_dict'], guide['backbone'])
    # 2 classes (+ background for the classifier)
    assert checkpoint['state_dict']['roi_head.bbox_head.fc_cls.weight'].shape[0] == 3
    assert checkpoint['state_dict']['roi_head.mask_head.conv_logits.weight'].shape[0] == 2
    test_output = outputs_of(guide, 'test', DET)
    assert re.search(r'coco/bbox_mAP: [0-9.]+ .*coco/segm_mAP: [0-9.]+', test_output)


@pytest.mark.slow
def test_segmentor_fine_tunes_on_image_and_mask_folders(guide):
    output = outputs_of(guide, 'train', SEG)
    assert re.search(r'Iter\(train\) \[2/2\]', output)
    assert 'reverted to BatchNormXd' in output  # the recipe's SyncBN, on one process
    checkpoint = trained_checkpoint(guide['project'], SEG)
    assert_backbone_from_imagenet_checkpoint(checkpoint['state_dict'], guide['backbone'])
    assert checkpoint['state_dict']['decode_head.conv_seg.weight'].shape[0] == 3
    test_output = outputs_of(guide, 'test', SEG)
    # the per-class table names the guide's classes
    for name in ('background', 'box', 'disk'):
        assert re.search(rf'\|\s*{name}\s*\|', test_output), name
    assert re.search(r'mIoU: [0-9.]+', test_output)


@pytest.mark.slow
def test_tensorboard_serves_both_runs(guide):
    tags = guide['tags']
    det = next(tags[run] for run in tags if run.startswith('mask-rcnn_dat-tiny_fpn_my-coco'))
    seg = next(tags[run] for run in tags if run.startswith('upernet_dat-tiny_my-seg'))
    assert {'loss', 'lr', 'coco/bbox_mAP', 'coco/segm_mAP'} <= set(det)
    assert {'loss', 'lr', 'mIoU'} <= set(seg)
