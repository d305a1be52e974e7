"""End-to-end checks of the classification tools: dist_train.sh (2 CPU processes, gloo),
auto-resume, test.sh, the golden checkpoint through test.py, and data errors."""
import json
import os
import pickle
import re
import socket
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mini_configs import TINY_TRAIN_CONFIG

from dat.models.checkpoint import read_checkpoint

REPO = Path(__file__).resolve().parents[2]
CLASSES = ('stripes_0', 'stripes_45', 'stripes_90', 'stripes_135', 'checkerboard', 'dots')

# Records the state the runner holds after resuming, just before the first iteration.
PROBE = """
import torch
from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS


@HOOKS.register_module()
class ResumeProbe(Hook):
    def __init__(self, out):
        self.out = out

    def before_train(self, runner):
        if runner.rank == 0:
            torch.save(dict(iter=runner.iter, epoch=runner.epoch,
                            optimizer=runner.optim_wrapper.state_dict(),
                            schedulers=[s.state_dict() for s in runner.param_schedulers]),
                       self.out)
"""


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def run(cmd, env=None, check=True):
    env = {**os.environ, 'PYTHONPATH': str(REPO), **(env or {})}
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f'{cmd} failed ({result.returncode}):\n{result.stdout[-3000:]}\n'
                             f'{result.stderr[-5000:]}')
    return result


def scalars(work_dir):
    """Training entries of the newest run's scalars.json."""
    run_dir = sorted(p for p in work_dir.iterdir() if (p / 'vis_data').is_dir())[-1]
    lines = (run_dir / 'vis_data' / 'scalars.json').read_text().splitlines()
    return [e for e in map(json.loads, lines) if 'loss' in e]


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """Generated data, a tiny config, and one epoch of 2-process training (3 iterations)."""
    root = tmp_path_factory.mktemp('in1k_tools')
    data = root / 'data'
    run([sys.executable, 'tools/dataset_converters/make_shapes_dataset.py', str(data),
         '--train', '4', '--val', '2', '--size', '32'])
    config = root / 'tiny.py'
    config.write_text(TINY_TRAIN_CONFIG.format(repo=REPO, data=data))
    work_dir = root / 'work_dirs' / 'tiny'
    result = run(['bash', 'tools/dist_train.sh', str(config), '2', '--work-dir', str(work_dir)],
                 env={'PORT': str(free_port())})
    return dict(root=root, data=data, config=config, work_dir=work_dir, log=result)


@pytest.mark.slow
def test_dist_train_writes_checkpoints_and_logs(trained):
    work_dir = trained['work_dir']
    assert (work_dir / 'epoch_1.pth').is_file()
    assert (work_dir / 'last_checkpoint').read_text().strip().endswith('epoch_1.pth')
    assert list(work_dir.glob('*/*.log'))
    entries = scalars(work_dir)
    # 24 images, 2 processes x batch 4: 3 iterations, each logged
    assert [e['iter'] for e in entries] == [1, 2, 3]
    assert all(np.isfinite(e['loss']) and e['loss'] > 0 for e in entries)
    checkpoint = read_checkpoint(work_dir / 'epoch_1.pth')
    assert checkpoint['meta']['epoch'] == 1 and checkpoint['meta']['iter'] == 3
    assert any(k.endswith('attn.rpe_table') for k in checkpoint['state_dict'])


@pytest.mark.slow
def test_resume_continues_with_the_same_state(trained):
    root, work_dir = trained['root'], trained['work_dir']
    (root / 'resume_probe.py').write_text(PROBE)
    probe_out = root / 'probe.pth'
    config = root / 'tiny_resume.py'
    config.write_text(f"_base_ = ['{trained['config']}']\n"
                      "custom_imports = dict(imports=['dat.adapters.mmpretrain', "
                      "'resume_probe'], allow_failed_imports=False)\n"
                      f"custom_hooks = [dict(type='ResumeProbe', out='{probe_out}')]\n")
    saved = read_checkpoint(work_dir / 'epoch_1.pth')
    result = run(['bash', 'tools/dist_train.sh', str(config), '2', '--work-dir', str(work_dir),
                  '--resume', '--cfg-options', 'train_cfg.max_epochs=2'],
                 env={'PORT': str(free_port()),
                      'PYTHONPATH': f'{REPO}{os.pathsep}{root}'})
    assert 'resumed epoch: 1, iter: 3' in result.stdout + result.stderr

    state = torch.load(probe_out, map_location='cpu', weights_only=False)  # the probe's own file
    assert (state['epoch'], state['iter']) == (1, 3)
    assert state['schedulers'] == saved['param_schedulers']
    opt, ref = state['optimizer'], saved['optimizer']
    assert opt['param_groups'] == ref['param_groups']
    assert opt['state'].keys() == ref['state'].keys()
    for key, value in ref['state'].items():
        for name, tensor in value.items():
            torch.testing.assert_close(opt['state'][key][name], tensor, rtol=0, atol=0)

    assert [e['iter'] for e in scalars(work_dir)] == [4, 5, 6]
    assert (work_dir / 'epoch_2.pth').is_file()


@pytest.mark.slow
def test_test_sh_prints_top1_and_top5(trained):
    checkpoint = trained['work_dir'] / 'epoch_1.pth'
    # 2 processes: through tools/dist_test.sh (gloo on the CPU)
    result = run(['bash', 'tools/test.sh', str(trained['config']), str(checkpoint), '2',
                  '--work-dir', str(trained['root'] / 'test')], env={'PORT': str(free_port())})
    last = result.stdout.strip().splitlines()[-1]
    words = last.split()
    assert words[0] == 'Acc@1' and words[2] == 'Acc@5', last
    acc1, acc5 = float(words[1]), float(words[3])
    assert 0 <= acc1 <= acc5 <= 100


@pytest.mark.slow
def test_corrupt_image_and_missing_root_are_named(trained, tmp_path):
    """The dataloaders the tools build (Runner.build_dataloader) name the bad file / path."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner

    import dat.adapters.mmpretrain  # noqa: F401
    init_default_scope('mmpretrain')
    cfg = Config.fromfile(trained['config'])

    # a val image that is not an image
    broken = tmp_path / 'data'
    subprocess.run(['cp', '-r', str(trained['data']), str(broken)], check=True)
    bad = broken / 'val' / 'dots' / '00001.png'
    bad.write_bytes(b'this is not a PNG')
    cfg.test_dataloader.dataset.data_root = str(broken)
    with pytest.raises(Exception, match=re.escape(str(bad))):
        for _ in Runner.build_dataloader(cfg.test_dataloader):
            pass

    missing = tmp_path / 'no' / 'such' / 'imagenet'
    cfg.train_dataloader.dataset.data_root = str(missing)
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        Runner.build_dataloader(cfg.train_dataloader)


@pytest.mark.slow
def test_golden_checkpoint_predictions_through_test_py(reference_dir, tmp_path):
    """The converted golden 2022 checkpoint, fed the golden input as lossless float32 TIFF
    files (identity normalisation), predicts the golden logits' softmax."""
    io = torch.load(reference_dir / 'golden_mini_io.pth', weights_only=True)
    config = json.loads((reference_dir / 'golden_mini_config.json').read_text())
    converted = tmp_path / 'golden_mmpretrain.pth'
    run([sys.executable, 'tools/model_converters/dat2mmpretrain.py',
         str(reference_dir / 'golden_mini_dat2022.pth'), str(converted)])
    meta = read_checkpoint(converted)['meta']

    images = tmp_path / 'data' / 'images'
    images.mkdir(parents=True)
    labels = io['logits'].argmax(1).tolist()
    lines = []
    for i, image in enumerate(io['input']):
        # (C, H, W) -> (H, W, C), written and read back by cv2 channel for channel
        assert cv2.imwrite(str(images / f'{i}.tif'), image.permute(1, 2, 0).numpy())
        lines.append(f'{i}.tif {labels[i]}')
    (tmp_path / 'data' / 'meta.txt').write_text('\n'.join(lines) + '\n')

    cfg = tmp_path / 'golden.py'
    cfg.write_text(f"""
_base_ = ['{REPO}/configs/_base_/default_runtime.py']
custom_imports = dict(imports=['dat.adapters.mmpretrain'], allow_failed_imports=False)
model = dict(
    type='ImageClassifier',
    data_preprocessor=dict(num_classes={config['num_classes']}, mean=[0., 0., 0.],
                           std=[1., 1., 1.], to_rgb=False),
    backbone=dict(type='DAT', arch={meta['arch']!r}, img_size={meta['img_size']},
                  window_size={meta['window_size']!r}),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes={config['num_classes']},
              in_channels={config['dims'][-1]}))
test_dataloader = dict(
    batch_size=2, num_workers=0,
    dataset=dict(type='CustomDataset', data_root='{tmp_path / 'data'}', ann_file='meta.txt',
                 data_prefix='images',
                 pipeline=[dict(type='LoadImageFromFile', color_type='unchanged',
                                imdecode_backend='cv2'),
                           dict(type='PackInputs')]),
    sampler=dict(type='DefaultSampler', shuffle=False))
test_evaluator = dict(type='Accuracy', topk=(1, 5))
test_cfg = dict()
""")
    out = tmp_path / 'preds.pkl'
    result = run([sys.executable, 'tools/test.py', str(cfg), str(converted),
                  '--work-dir', str(tmp_path / 'work'), '--out', str(out)])
    assert 'accuracy/top1: 100.0000' in result.stdout
    with open(out, 'rb') as f:
        preds = pickle.load(f)
    scores = torch.stack([p['pred_score'] for p in preds])
    torch.testing.assert_close(scores, io['logits'].softmax(1), atol=1e-6, rtol=0)
    assert [int(p['pred_label']) for p in preds] == labels
