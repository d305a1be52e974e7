import json
import re
import subprocess
import sys
from collections import defaultdict

import pytest
import torch
import torch.nn.functional as F

from dat.converters import ConversionError, convert_dat2022, rename_key
from dat.models import DAT


def read_key_tables(reference_dir):
    """{model name: {key: (shape, dtype)}} from dat2022_checkpoint_keys.tsv."""
    tables, current = defaultdict(dict), None
    for line in (reference_dir / 'dat2022_checkpoint_keys.tsv').read_text().splitlines():
        header = re.match(r'# (\w+): (\d+) parameters, (\d+) entries', line)
        if header:
            current = header.group(1)
            continue
        key, shape, dtype = line.split('\t')
        tables[current][key] = (tuple(json.loads(shape.replace('(', '[').replace(',)', ']')
                                                 .replace(')', ']'))), dtype)
    return tables


def random_checkpoint(table):
    state = {}
    for key, (shape, dtype) in table.items():
        if dtype == 'int64':
            state[key] = torch.zeros(shape, dtype=torch.int64)
        else:
            state[key] = torch.empty(shape).uniform_(-1, 1)
    return {'model': state}


EXPECTED = {
    'dat_tiny': ('tiny', 224, [7] * 4),
    'dat_small': ('small', 224, [7] * 4),
    'dat_base': ('base', 224, [7] * 4),
    'dat_base_384': ('base', 384, [12] * 4),
}


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_released_layouts_convert_with_every_key_used_once(reference_dir, name):
    table = read_key_tables(reference_dir)[name]
    checkpoint = random_checkpoint(table)
    converted, info = convert_dat2022(checkpoint)
    arch, img_size, windows = EXPECTED[name]
    assert (info['arch'], info['img_size'], info['window_size'], info['num_classes']) == \
        (arch, img_size, windows, 1000)

    # every 2022 key maps to exactly one of ours, or is a buffer that is rebuilt
    targets = defaultdict(list)
    for key in table:
        new_key, _ = rename_key(key)
        if new_key is None:
            assert key.endswith(('relative_position_index', 'attn_mask'))
        else:
            targets[new_key].append(key)
    assert all(len(keys) == 1 for keys in targets.values())
    assert set(targets) == set(converted)

    # and the result is exactly what the model and its head hold
    model = DAT(arch, img_size=img_size, window_size=windows)
    backbone = {k[len('backbone.'):]: v for k, v in converted.items()
                if k.startswith('backbone.')}
    model.load_state_dict(backbone, strict=True)
    assert tuple(converted['head.fc.weight'].shape) == (1000, model.num_features[-1])
    src = checkpoint['model']['stages.2.attns.1.proj_q.weight']
    assert torch.equal(model.stages[2].blocks[1].attn.q.weight, src[:, :, 0, 0])


def test_golden_mini_logits_and_positions(reference_dir):
    checkpoint = torch.load(reference_dir / 'golden_mini_dat2022.pth', weights_only=True)
    io = torch.load(reference_dir / 'golden_mini_io.pth', weights_only=True)
    config = json.loads((reference_dir / 'golden_mini_config.json').read_text())
    converted, info = convert_dat2022(checkpoint)
    assert info['img_size'] == config['img_size']
    assert info['window_size'] == config['window_sizes']
    assert info['arch']['block_types'] == [''.join(s) for s in config['stage_spec']]

    model = DAT(info['arch'], img_size=info['img_size'], window_size=info['window_size'])
    model.load_state_dict({k[9:]: v for k, v in converted.items() if k.startswith('backbone.')})
    with torch.no_grad():
        outs, deform = model.eval().forward_with_deform_info(io['input'])
        logits = F.linear(outs[-1].mean((2, 3)), converted['head.fc.weight'],
                          converted['head.fc.bias'])
    torch.testing.assert_close(logits, io['logits'], atol=1e-5, rtol=0)
    assert sorted(deform) == sorted(io['sampling_positions'])
    for key in io['sampling_positions']:
        torch.testing.assert_close(deform[key]['positions'], io['sampling_positions'][key],
                                   atol=1e-5, rtol=0)
        torch.testing.assert_close(deform[key]['references'], io['reference_points'][key],
                                   atol=1e-5, rtol=0)


def test_errors_name_the_key(reference_dir):
    table = read_key_tables(reference_dir)['dat_tiny']

    state = random_checkpoint(table)['model']
    state['stages.1.attns.0.bogus'] = torch.zeros(3)
    with pytest.raises(ConversionError, match=r"unknown key .*'stages\.1\.attns\.0\.bogus'"):
        convert_dat2022({'model': state})

    state = random_checkpoint(table)['model']
    del state['stages.2.attns.3.proj_k.weight']
    with pytest.raises(ConversionError,
                       match=r"nothing for 'backbone\.stages\.2\.blocks\.3\.attn\.k\.weight'"):
        convert_dat2022({'model': state})

    state = random_checkpoint(table)['model']
    state['stages.3.mlps.1.chunk.linear1.weight'] = torch.zeros(10, 768)
    with pytest.raises(ConversionError, match=r"'stages\.3\.mlps\.1\.chunk\.linear1\.weight' "
                       r'has shape \(10, 768\)'):
        convert_dat2022({'model': state})

    state = random_checkpoint(table)['model']
    del state['stages.0.layer_norms.0.norm.weight']
    with pytest.raises(ConversionError, match="no key 'stages.0.layer_norms.0.norm.weight'"):
        convert_dat2022({'model': state})

    with pytest.raises(ConversionError, match='expected a 2022 DAT checkpoint'):
        convert_dat2022({'model': {'meta': 'not a tensor'}})


@pytest.mark.slow
def test_converter_cli(reference_dir, repo_root, tmp_path):
    dst = tmp_path / 'out' / 'mini.pth'
    tool = repo_root / 'tools' / 'model_converters' / 'dat2mmpretrain.py'
    result = subprocess.run([sys.executable, str(tool), str(reference_dir /
                             'golden_mini_dat2022.pth'), str(dst)],
                            capture_output=True, text=True, check=True)
    assert 'converted' in result.stdout
    saved = torch.load(dst, weights_only=True)
    assert 'head.fc.weight' in saved['state_dict']
    assert saved['meta']['img_size'] == 64

    bad = tmp_path / 'bad.pth'
    torch.save({'model': {'foo.weight': torch.zeros(1)}}, bad)
    result = subprocess.run([sys.executable, str(tool), str(bad), str(tmp_path / 'x.pth')],
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert 'stages.0.layer_norms.0.norm.weight' in result.stderr
    assert not (tmp_path / 'x.pth').exists()

    result = subprocess.run([sys.executable, str(tool), str(tmp_path / 'missing.pth'),
                             str(tmp_path / 'x.pth')], capture_output=True, text=True)
    assert result.returncode != 0 and 'no such checkpoint' in result.stderr
