"""Every documented way of loading weights: a hostile file is refused by each (and runs
nothing), a checkpoint of another model is refused by each, good files load."""
import sys

import cv2
import numpy as np
import pytest
import torch
from ckpt_helpers import (ARCH, CLS_CONFIG, REPO, run, runs_code_when_unpickled,
                          write_2022_checkpoint, write_malicious)

from dat.models.checkpoint import CheckpointError


@pytest.fixture(scope='module')
def files(tmp_path_factory, reference_dir):
    """A small classifier config, its weights, the same weights with a payload (as an
    mmengine checkpoint and as a 2022 one), an image."""
    from mmengine.config import Config
    from mmpretrain import get_model

    import dat.adapters.mmpretrain  # noqa: F401
    root = tmp_path_factory.mktemp('paths')
    (root / 'cls.py').write_text(CLS_CONFIG)
    torch.manual_seed(0)
    model = get_model(Config.fromfile(root / 'cls.py'))
    state = model.state_dict()
    torch.save({'state_dict': state, 'meta': {}}, root / 'good.pth')
    marker = root / 'MARKER'
    write_malicious(root / 'evil.pth', marker, {'state_dict': state, 'meta': {}})
    golden = torch.load(reference_dir / 'golden_mini_dat2022.pth', weights_only=True)
    write_malicious(root / 'evil_2022.pth', marker, golden)
    assert runs_code_when_unpickled(root / 'evil.pth', marker)
    assert runs_code_when_unpickled(root / 'evil_2022.pth', marker)
    cv2.imwrite(str(root / 'img.png'),
                np.random.default_rng(0).integers(0, 255, (64, 80, 3), np.uint8))
    return dict(root=root, config=root / 'cls.py', good=root / 'good.pth',
                evil=root / 'evil.pth', evil_2022=root / 'evil_2022.pth',
                img=root / 'img.png', marker=marker, state=state)


def refused(text, path):
    """The one line that names the file and says it was refused."""
    lines = [line for line in text.strip().splitlines() if 'refused' in line]
    assert len(lines) == 1, text[-3000:]
    assert f'{path}: refused: its pickle needs posix.system' in lines[0]
    assert 'Traceback' not in text
    return lines[0]


@pytest.fixture(autouse=True)
def no_marker(files):
    yield
    assert not files['marker'].exists(), 'code from a checkpoint ran'


@pytest.mark.slow
def test_tools_test_py(files):
    result = run([sys.executable, 'tools/test.py', files['config'], files['evil']])
    assert result.returncode == 1
    refused(result.stderr, files['evil'])


@pytest.mark.slow
def test_tools_train_py_resume(files, tmp_path):
    result = run([sys.executable, 'tools/train.py', files['config'], '--resume', files['evil'],
                  '--work-dir', tmp_path])
    assert result.returncode == 1
    refused(result.stderr, files['evil'])


@pytest.mark.slow
def test_image_demo(files):
    result = run([sys.executable, 'tools/demo/image_demo.py', files['img'], files['config'],
                  '--checkpoint', files['evil']])
    assert result.returncode == 1
    refused(result.stderr, files['evil'])


@pytest.mark.slow
def test_converter(files, tmp_path):
    out = tmp_path / 'out.pth'
    result = run([sys.executable, 'tools/model_converters/dat2mmpretrain.py',
                  files['evil_2022'], out])
    assert result.returncode == 1 and not out.exists()
    refused(result.stderr, files['evil_2022'])


def test_pretrained_init_cfg(files):
    from dat.models import DAT
    backbone = DAT(ARCH, img_size=64, init_cfg=dict(type='Pretrained', prefix='backbone.',
                                                    checkpoint=str(files['evil'])))
    with pytest.raises(CheckpointError) as error:
        backbone.init_weights()
    refused(str(error.value), files['evil'])


def test_get_model_pretrained(files, mmengine_patched):
    from mmpretrain import get_model
    with pytest.raises(CheckpointError) as error:
        get_model(str(files['config']), pretrained=str(files['evil']))
    refused(str(error.value), files['evil'])


def test_mmengine_loaders(files, mmengine_patched):
    """mmengine's load_checkpoint (Runner load_from / resume, the inferencers) reads local
    files with our loader once dat.mmengine_patches is applied (as our tools do)."""
    from mmengine.runner import CheckpointLoader, load_checkpoint
    with pytest.raises(CheckpointError) as error:
        CheckpointLoader.load_checkpoint(str(files['evil']), map_location='cpu')
    refused(str(error.value), files['evil'])
    with pytest.raises(CheckpointError):
        load_checkpoint(torch.nn.Linear(1, 1), str(files['evil']))


def test_visualiser(files, load_tool, tmp_path):
    tool = load_tool('visualization/vis_deform_points.py')
    with pytest.raises(SystemExit) as error:
        tool.main([str(files['img']), str(files['config']), str(files['evil']),
                   '--out', str(tmp_path / 'x.png')])
    refused(str(error.value), files['evil'])


def test_onnx_export(files, load_tool, tmp_path):
    tool = load_tool('deployment/pytorch2onnx.py')
    for extra in ([], ['--backbone']):
        with pytest.raises(SystemExit) as error:
            tool.main([str(files['config']), str(files['evil']), '--shape', '64', '64',
                       '--out', str(tmp_path / 'x.onnx')] + extra)
        refused(str(error.value), files['evil'])
    assert not (tmp_path / 'x.onnx').exists()


# --- files that must load ---------------------------------------------------------------

@pytest.mark.slow
def test_converted_golden_checkpoint_loads(reference_dir, tmp_path):
    from dat.models import DAT
    from dat.models.checkpoint import load_weights, read_checkpoint
    out = tmp_path / 'golden.pth'
    result = run([sys.executable, 'tools/model_converters/dat2mmpretrain.py',
                  reference_dir / 'golden_mini_dat2022.pth', out])
    assert result.returncode == 0, result.stderr
    meta = read_checkpoint(out)['meta']
    model = DAT(meta['arch'], img_size=meta['img_size'], window_size=meta['window_size'])
    report = load_weights(model, out, prefix='backbone.')
    assert report.loaded == len(model.state_dict())


@pytest.mark.slow
def test_2022_checkpoint_with_its_config_converts(reference_dir, tmp_path):
    """The 2022 training code saved its yacs config (and here an argparse Namespace) beside
    the weights; the converter reads them as data and converts the weights."""
    golden = torch.load(reference_dir / 'golden_mini_dat2022.pth', weights_only=True)
    marker = tmp_path / 'MARKER'
    path = tmp_path / 'ckpt_epoch_299.pth'
    write_2022_checkpoint(path, golden['model'], tmp_path, marker)
    outs = {}
    for name, src in (('with_config', path),
                      ('plain', reference_dir / 'golden_mini_dat2022.pth')):
        outs[name] = tmp_path / f'{name}.pth'
        result = run([sys.executable, 'tools/model_converters/dat2mmpretrain.py', src,
                      outs[name]])
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith('converted ')
    assert not marker.exists()
    a, b = (torch.load(outs[n], weights_only=True)['state_dict'] for n in ('with_config',
                                                                           'plain'))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- a checkpoint of another model is refused (issue 17) ------------------------------

def test_get_model_refuses_weights_of_another_size(tmp_path):
    """README's get_model(CONFIG, pretrained=FILE) with DAT-T weights and a DAT-S config:
    ours refuses the file; mmpretrain's (mmengine's strict=False) loads what fits."""
    import mmpretrain

    from dat.adapters.mmpretrain import get_model
    tiny = tmp_path / 'dat-tiny.pth'
    torch.save({'state_dict': get_model('dat-tiny_8xb128-amp_in1k').state_dict()}, tiny)
    config = str(REPO / 'configs/dat/dat-small_8xb128-amp_in1k.py')
    with pytest.raises(CheckpointError) as error:
        get_model(config, pretrained=str(tiny))
    message = str(error.value)
    assert 'the weights do not fit the DAT backbone (embed_dims=[96, 192, 384, 768], ' \
           'depths=[2, 2, 18, 2])' in message
    assert '210 missing from the checkpoint (first: backbone.stages.2.blocks.6.norm1.weight, ' \
           'backbone.stages.2.blocks.6.norm1.bias' in message
    model = mmpretrain.get_model(config, pretrained=str(tiny))  # mmpretrain's own: partial
    assert type(model.backbone).__name__ == 'DAT'
    assert get_model(config, pretrained=False).backbone.arch_settings['depths'][2] == 18
