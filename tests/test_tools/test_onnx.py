"""tools/deployment/pytorch2onnx.py: the exported graphs run in onnxruntime like PyTorch."""
import re

import numpy as np
import pytest
import torch
from mini_configs import DAT_ARCH as ARCH
from mini_configs import DAT_ARCH_1X as SMALL_DAT
from mini_configs import DATPP_ARCH_1X as SMALL_DATPP

from dat.models import DAT, DATPlusPlus

onnxruntime = pytest.importorskip('onnxruntime')

BACKBONE = f"dict(type='DAT', arch={ARCH!r}, img_size=64, window_size=4, out_indices=OUT)"
CLS_CONFIG = f"""
default_scope = 'mmpretrain'
custom_imports = dict(imports=['dat.adapters.mmpretrain'], allow_failed_imports=False)
model = dict(type='ImageClassifier', backbone={BACKBONE.replace('OUT', '(3, )')},
             neck=dict(type='GlobalAveragePooling'),
             head=dict(type='LinearClsHead', num_classes=10, in_channels=64))
"""
DENSE_CONFIG = f"""
default_scope = 'mmseg'
model = dict(type='EncoderDecoder', backbone={BACKBONE.replace('OUT', '(0, 1, 2, 3)')})
"""
#: One block per stage (every kind once): what the --dynamic tests export, to stay cheap.
SMALL_DENSE_CONFIGS = dict(
    dat=f"""
default_scope = 'mmseg'
model = dict(type='EncoderDecoder', backbone=dict(type='DAT', arch={SMALL_DAT!r}, img_size=64,
                                                  window_size=4, out_indices=(0, 1, 2, 3)))
""",
    datpp=f"""
default_scope = 'mmseg'
model = dict(type='EncoderDecoder', backbone=dict(type='DATPlusPlus', arch={SMALL_DATPP!r},
                                                  img_size=64, out_indices=(0, 1, 2, 3)))
""")


@pytest.fixture(scope='module')
def tool(load_tool):
    return load_tool('deployment/pytorch2onnx.py')


@pytest.fixture(scope='module')
def mini(tmp_path_factory):
    """Configs of a scaled-down classifier and backbone, and a checkpoint for them."""
    from mmengine.config import Config
    from mmpretrain.apis import get_model

    root = tmp_path_factory.mktemp('onnx')
    (root / 'cls.py').write_text(CLS_CONFIG)
    (root / 'dense.py').write_text(DENSE_CONFIG)
    torch.manual_seed(5)
    model = get_model(Config.fromfile(root / 'cls.py'))
    torch.save({'state_dict': model.state_dict()}, root / 'cls.pth')
    backbone = DAT(ARCH, img_size=64, window_size=4, out_indices=(0, 1, 2, 3))
    state = {f'backbone.{k}': v for k, v in backbone.state_dict().items()}
    state['decode_head.conv_seg.weight'] = torch.zeros(2, 8, 1, 1)  # not exported
    torch.save({'state_dict': state}, root / 'dense.pth')
    return dict(cls=str(root / 'cls.py'), dense=str(root / 'dense.py'),
                ckpt=str(root / 'cls.pth'), dense_ckpt=str(root / 'dense.pth'),
                model=model.eval(), backbone=backbone.eval())


def run_onnx(path, x):
    session = onnxruntime.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    return session.run(None, {'input': x.numpy()})


def printed_differences(text):
    return [float(v) for v in re.findall(r'max \|onnxruntime - pytorch\| = (\S+)', text)]


def test_mini_classifier(tool, mini, tmp_path, capsys):
    out = tmp_path / 'cls.onnx'
    tool.main([mini['cls'], mini['ckpt'], '--shape', '64', '96', '--out', str(out)])
    diffs = printed_differences(capsys.readouterr().out)
    assert len(diffs) == 1 and diffs[0] <= 1e-4
    # Checked here too, on another input, against the model that wrote the checkpoint.
    x = torch.randn(1, 3, 64, 96)
    (logits, ) = run_onnx(out, x)
    with torch.no_grad():
        expected = mini['model'](x, mode='tensor')
    assert logits.shape == (1, 10)
    np.testing.assert_allclose(logits, expected.numpy(), atol=1e-4, rtol=0)


def test_mini_backbone_outputs(tool, mini, tmp_path, capsys):
    out = tmp_path / 'backbone.onnx'
    tool.main([mini['dense'], mini['dense_ckpt'], '--backbone', '--shape', '64', '80',
               '--out', str(out)])
    diffs = printed_differences(capsys.readouterr().out)
    assert len(diffs) == 4 and max(diffs) <= 1e-4
    x = torch.randn(1, 3, 64, 80)
    feats = run_onnx(out, x)
    with torch.no_grad():
        expected = mini['backbone'](x)
    assert [f.shape for f in feats] == [(1, 16, 16, 20), (1, 32, 8, 10), (1, 64, 4, 5),
                                        (1, 64, 2, 2)]
    for got, want in zip(feats, expected):
        np.testing.assert_allclose(got, want.numpy(), atol=1e-4, rtol=0)


def test_backbone_checkpoint_must_fit(tool, mini, tmp_path):
    # A classifier checkpoint has only norm3; the dense config wants norm0 .. norm3.
    with pytest.raises(SystemExit,
                       match=r'does not fit the DAT backbone.*6 missing from the checkpoint'):
        tool.main([mini['dense'], mini['ckpt'], '--backbone', '--shape', '64', '64',
                   '--out', str(tmp_path / 'x.onnx')])


@pytest.mark.slow
@pytest.mark.parametrize('config', ['configs/dat/dat-tiny_8xb128-amp_in1k.py'])
def test_classifier_dynamic_size(tool, repo_root, tmp_path, capsys, config):
    """DAT-T exported once at 224, run at three sizes (batch 1 and 2; 237 x 231 is not a
    multiple of 32) in onnxruntime, as in PyTorch. (DAT-T++'s full classifier takes about
    6 minutes on 2 CPU cores; DAT++ is exported with --dynamic by the mini backbone test.)"""
    out = tmp_path / 'model.onnx'
    tool.main([str(repo_root / config), '--shape', '224', '224', '--out', str(out), '--dynamic',
               '--check-shape', '256', '288', '--check-shape', '237', '231'])
    text = capsys.readouterr().out
    diffs = printed_differences(text)
    assert len(diffs) == 3 and max(diffs) <= 1e-4, text
    assert 'dynamic: input (2, 3, 256, 288)' in text and 'dynamic: input (2, 3, 237, 231)' in text


@pytest.mark.parametrize('arch, legacy', [('dat', False), ('datpp', False), ('dat', True)])
def test_mini_backbone_dynamic_size(tool, tmp_path, capsys, arch, legacy):
    """The backbone (one output per stage) exported at 64 x 96 with --dynamic (torch's
    exporter, or the TorchScript one with --legacy) holds at the default check sizes
    (96 x 160, 77 x 103) and at one more, checked here again."""
    config = tmp_path / f'{arch}.py'
    config.write_text(SMALL_DENSE_CONFIGS[arch])
    out = tmp_path / 'backbone.onnx'
    tool.main([str(config), '--backbone', '--shape', '64', '96', '--out', str(out),
               '--dynamic'] + ['--legacy'] * legacy)
    text = capsys.readouterr().out
    diffs = printed_differences(text)
    assert len(diffs) == 4 + 2 and max(diffs) <= 1e-4, text  # 4 outputs, then 2 sizes
    assert 'input (2, 3, 77, 103)' in text
    assert f'(opset {17 if legacy else 18})' in text
    torch.manual_seed(0)
    backbone = (DATPlusPlus(SMALL_DATPP, img_size=64, out_indices=(0, 1, 2, 3))
                if arch == 'datpp' else
                DAT(SMALL_DAT, img_size=64, window_size=4, out_indices=(0, 1, 2, 3))).eval()
    x = torch.randn(1, 3, 70, 90)
    feats = run_onnx(out, x)
    with torch.no_grad():
        expected = backbone(x)
    for got, want in zip(feats, expected):
        assert got.shape == tuple(want.shape)
        np.testing.assert_allclose(got, want.numpy(), atol=1e-4, rtol=0)


def test_errors(tool, mini, tmp_path):
    out = str(tmp_path / 'x.onnx')
    with pytest.raises(SystemExit, match='no such checkpoint'):
        tool.main([mini['cls'], str(tmp_path / 'none.pth'), '--out', out])
    with pytest.raises(SystemExit, match='no GridSample'):
        tool.main([mini['cls'], '--opset', '13', '--out', out])
    with pytest.raises(SystemExit, match='pass --backbone'):
        tool.main([mini['dense'], '--shape', '64', '64', '--out', out])
    with pytest.raises(SystemExit, match='too small for DAT'):
        tool.main([mini['cls'], '--shape', '16', '64', '--out', out])
    with pytest.raises(SystemExit, match='--check-shape 20 64: .*too small for DAT'):
        tool.main([mini['cls'], '--dynamic', '--legacy', '--check-shape', '20', '64',
                   '--out', out])
    with pytest.raises(SystemExit, match='--check-shape 48 64: .*sides from 64 px'):
        tool.main([mini['cls'], '--dynamic', '--check-shape', '48', '64', '--out', out])
    with pytest.raises(SystemExit, match='--opset 17: .*pass --legacy'):
        tool.main([mini['cls'], '--opset', '17', '--out', out])
    with pytest.raises(SystemExit, match='add --dynamic'):
        tool.main([mini['cls'], '--check-shape', '64', '64', '--out', out])
