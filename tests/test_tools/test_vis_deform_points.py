"""tools/visualization/vis_deform_points.py on a scaled-down DAT (and DAT++) and a generated
image."""
import json
import math

import cv2
import numpy as np
import pytest
import torch
from mini_configs import DAT_ARCH, DATPP_ARCH

from dat.models import DAT, DATPlusPlus

ARCH = dict(DAT_ARCH, block_types=['L', 'S', 'DD', 'LD'])
PREPROCESSOR = 'data_preprocessor = dict(mean=[120.0, 110.0, 100.0], std=[60.0, 50.0, 40.0])'
CONFIG = f"""
model = dict(backbone=dict(type='DAT', arch={ARCH!r}, img_size=64, window_size=4,
                           out_indices=(3, )))
{PREPROCESSOR}
"""
MEAN, STD = np.array([120.0, 110.0, 100.0]), np.array([60.0, 50.0, 40.0])
IMAGE_HW = (80, 112)  # resized to 64 x 90 (short side 64): stage-2 map 4 x 5


@pytest.fixture(scope='module')
def tool(load_tool):
    return load_tool('visualization/vis_deform_points.py')


@pytest.fixture(scope='module')
def mini(tmp_path_factory):
    """A config, a checkpoint (trained-like: non-zero offsets) and an image."""
    root = tmp_path_factory.mktemp('vis')
    (root / 'mini.py').write_text(CONFIG)
    torch.manual_seed(3)
    model = DAT(ARCH, img_size=64, window_size=4).eval()
    with torch.no_grad():  # larger offsets, so that keys leave the reference grid
        for module in model.modules():
            if module.__class__.__name__ == 'OffsetNetwork':
                module.proj.weight.mul_(20)
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in model.state_dict().items()},
                'meta': {}}, root / 'mini.pth')
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (*IMAGE_HW, 3), dtype=np.uint8)
    cv2.imwrite(str(root / 'img.png'), img)
    grey = np.full((*IMAGE_HW, 3), 128, np.uint8)
    cv2.imwrite(str(root / 'grey.png'), grey)
    return dict(root=root, config=str(root / 'mini.py'), ckpt=str(root / 'mini.pth'),
                img=str(root / 'img.png'), grey=str(root / 'grey.png'), model=model)


def model_info(mini, img_path):
    """forward_with_deform_info on the image, preprocessed here independently of the tool."""
    rgb = cv2.cvtColor(cv2.imread(img_path), cv2.COLOR_BGR2RGB)
    rgb = cv2.resize(rgb, (90, 64), interpolation=cv2.INTER_LINEAR)
    x = torch.from_numpy(((rgb - MEAN) / STD).astype(np.float32)).permute(2, 0, 1)[None]
    with torch.no_grad():
        return mini['model'].forward_with_deform_info(x)[1]


def test_drawn_points_are_the_model_positions(tool, mini, tmp_path):
    out, dump = tmp_path / 'out.png', tmp_path / 'points.json'
    tool.main([mini['img'], mini['config'], mini['ckpt'], '--stage', '2', '--block', '1',
               '--query', '2', '3', '--out', str(out), '--dump', str(dump)])
    drawn = cv2.imread(str(out))
    assert drawn.shape[:2] == IMAGE_HW  # one panel, the input's size

    panel = json.loads(dump.read_text())['panels'][0]
    assert panel['block'] == 'stage2.block1' and panel['query'] == [2, 3]
    info = model_info(mini, mini['img'])['stage2.block1']
    positions = info['positions'][0]  # (G=2, 4, 5, 2), (y, x) in [-1, 1]
    assert positions.shape == (2, 4, 5, 2)
    # grid_sample (align_corners=True) index, then stride 16, then the 64x90 -> 80x112 resize.
    index = (positions + 1) / 2 * torch.tensor([3.0, 4.0])
    expect_y = (index[..., 0] + 0.5) * 16 * 80 / 64 - 0.5
    expect_x = (index[..., 1] + 0.5) * 16 * 112 / 90 - 0.5
    offsets = (positions - info['references'][0]).abs().max()
    assert offsets > 0.1  # the keys are not just the reference grid
    weights = info['attn_weights'][0, :, 2 * 5 + 3]  # (heads=4, keys=20)
    for g, group in enumerate(panel['groups']):
        keys = torch.tensor(group['keys_xy'])
        torch.testing.assert_close(keys[:, 0], expect_x[g].flatten(), atol=1e-4, rtol=0)
        torch.testing.assert_close(keys[:, 1], expect_y[g].flatten(), atol=1e-4, rtol=0)
        torch.testing.assert_close(torch.tensor(group['weights']),
                                   weights[2 * g:2 * g + 2].mean(0), atol=1e-6, rtol=0)
    # The query is drawn at the centre of its cell: (3 + 0.5) * 16 * 112 / 90 - 0.5, ...
    assert panel['query_xy'] == pytest.approx([3.5 * 16 * 112 / 90 - 0.5, 2.5 * 20 - 0.5])


def test_markers_are_drawn_at_the_key_positions(tool, mini, tmp_path):
    out, dump = tmp_path / 'grey.png', tmp_path / 'grey.json'
    tool.main([mini['grey'], mini['config'], mini['ckpt'], '--block', '1', '--query', '0', '0',
               '--out', str(out), '--dump', str(dump)])
    drawn = cv2.imread(str(out)).astype(int)
    panel = json.loads(dump.read_text())['panels'][0]
    keys = np.concatenate([g['keys_xy'] for g in panel['groups']]).round().astype(int)
    inside = keys[(keys[:, 0] >= 0) & (keys[:, 0] < IMAGE_HW[1]) &
                  (keys[:, 1] >= 0) & (keys[:, 1] < IMAGE_HW[0])]
    assert len(inside) > 10
    changed = np.abs(drawn[inside[:, 1], inside[:, 0]] - 128).max(-1) > 20
    assert changed.all()  # a marker covers every sampled key position
    assert (np.abs(drawn - 128).max(-1) <= 20).mean() > 0.2  # and not the whole image


def test_panels_and_salient_query(tool, mini, tmp_path, capsys):
    out, dump = tmp_path / 'panels.png', tmp_path / 'panels.json'
    tool.main([mini['img'], mini['config'], mini['ckpt'], '--out', str(out),
               '--dump', str(dump)])
    assert cv2.imread(str(out)).shape[:2] == (IMAGE_HW[0], 2 * IMAGE_HW[1])  # 2 D blocks
    panels = json.loads(dump.read_text())['panels']
    assert [p['block'] for p in panels] == ['stage2.block0', 'stage2.block1']
    printed = capsys.readouterr().out
    info = model_info(mini, mini['img'])
    for panel in panels:
        attn = info[panel['block']]['attn_weights'][0]  # (heads, queries, keys)
        entropy = -(attn * attn.log()).sum(-1).mean(0)
        index = int(entropy.argmin())
        assert panel['query'] == [index // 5, index % 5]
        assert f'{panel["block"]}: query (y, x) = {tuple(panel["query"])}' in printed
        assert entropy.min() < math.log(20)


def test_random_weights(tool, mini, tmp_path):
    out = tmp_path / 'random.png'
    tool.main([mini['img'], mini['config'], '--stage', '3', '--out', str(out)])
    assert cv2.imread(str(out)).shape[:2] == IMAGE_HW


@pytest.mark.parametrize('extra, message', [
    (['--stage', '1'], r"stage 1 has no D block \(block types 'S'\); stages with D blocks: "
                       r'\[2, 3\]'),
    (['--stage', '3', '--block', '0'], r'block 0 of stage 3 is an L block; its D blocks are '
                                       r'\[1\]'),
    (['--query', '4', '0'], r'query \(y, x\) = \(4, 0\) is outside the 4x5 feature map of '
                            r'stage2'),
    (['--query', '0', '-1'], r'outside the 4x5 feature map'),
])
def test_errors(tool, mini, tmp_path, extra, message):
    with pytest.raises(SystemExit, match=message):
        tool.main([mini['img'], mini['config'], mini['ckpt'], '--out',
                   str(tmp_path / 'x.png')] + extra)


def test_input_errors(tool, mini, tmp_path):
    out = str(tmp_path / 'x.png')
    with pytest.raises(SystemExit, match='no such image: .*missing.jpg'):
        tool.main([str(tmp_path / 'missing.jpg'), mini['config'], '--out', out])
    with pytest.raises(SystemExit, match='no such checkpoint'):
        tool.main([mini['img'], mini['config'], str(tmp_path / 'no.pth'), '--out', out])
    other = tmp_path / 'other.pth'
    torch.save({'state_dict': {'backbone.patch_embed.proj.weight': torch.zeros(8, 3, 4, 4)}},
               other)
    with pytest.raises(SystemExit, match='does not fit the backbone'):
        tool.main([mini['img'], mini['config'], str(other), '--out', out])


def test_datpp_keys_on_their_strided_grid(tool, mini, tmp_path):
    """DAT++: the keys (a strided grid) are sampled from the queries' map, and a cell of
    stage s is centred on input pixel i * 4 * 2**s (3x3 stride-2 convolutions)."""
    config, ckpt = tmp_path / 'datpp.py', tmp_path / 'datpp.pth'
    config.write_text(f"model = dict(backbone=dict(type='DATPlusPlus', arch={DATPP_ARCH!r}, "
                      f'img_size=64))\n{PREPROCESSOR}\n')
    torch.manual_seed(3)
    model = DATPlusPlus(DATPP_ARCH, img_size=64).eval()
    torch.save({'state_dict': model.state_dict()}, ckpt)
    dump = tmp_path / 'datpp.json'
    tool.main([mini['img'], str(config), str(ckpt), '--stage', '1', '--query', '3', '5',
               '--out', str(tmp_path / 'datpp.png'), '--dump', str(dump)])
    panel = json.loads(dump.read_text())['panels'][0]
    rgb = cv2.cvtColor(cv2.imread(mini['img']), cv2.COLOR_BGR2RGB)
    rgb = cv2.resize(rgb, (90, 64), interpolation=cv2.INTER_LINEAR)
    x = torch.from_numpy(((rgb - MEAN) / STD).astype(np.float32)).permute(2, 0, 1)[None]
    with torch.no_grad():
        info = model.forward_with_deform_info(x)[1]['stage1.block0']
    # stage 1 of a 64 x 90 input: an 8 x 12 map; keys every 4 cells: 2 x 3
    assert info['feature_size'] == (8, 12) and info['positions'].shape == (1, 1, 2, 3, 2)
    assert panel['block'] == 'stage1.block0' and panel['feature_size'] == [8, 12]
    index = (info['positions'][0, 0] + 1) / 2 * torch.tensor([7.0, 11.0])
    expect = (index * 8 + 0.5) * torch.tensor([80 / 64, 112 / 90]) - 0.5
    keys = torch.tensor(panel['groups'][0]['keys_xy'])
    torch.testing.assert_close(keys, expect.flip(-1).reshape(-1, 2), atol=1e-4, rtol=0)
    torch.testing.assert_close(torch.tensor(panel['groups'][0]['weights']),
                               info['attn_weights'][0, :, 3 * 12 + 5].mean(0), atol=1e-6, rtol=0)
    assert panel['query_xy'] == pytest.approx([(5 * 8 + 0.5) * 112 / 90 - 0.5,
                                               (3 * 8 + 0.5) * 80 / 64 - 0.5])
