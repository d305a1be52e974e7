import json
import subprocess
import sys
from collections import defaultdict

import pytest
import torch
import torch.nn.functional as F

from dat.converters import ConversionError
from dat.converters.datpp import convert_datpp, rename_key
from dat.models import DATPlusPlus

PARAMS = {'dat_pp_tiny': 23_962_876, 'dat_pp_small': 53_127_366, 'dat_pp_base': 93_690_640,
          'dat_pp_base_384': 93_690_640}
ARCH = {'dat_pp_tiny': 'tiny', 'dat_pp_small': 'small', 'dat_pp_base': 'base',
        'dat_pp_base_384': 'base'}


def random_state(table):
    return {key: torch.empty(shape).uniform_(-1, 1) for key, shape in table.items()}


@pytest.fixture(scope='module')
def released(reference_dir, key_lists):
    return key_lists(reference_dir / 'datpp_checkpoint_keys.tsv')


@pytest.mark.parametrize('name', sorted(PARAMS))
def test_released_layouts_convert_with_every_key_used_once(released, name):
    declared, table = released[name]
    assert declared == PARAMS[name]
    state = random_state(table)
    assert sum(v.numel() for v in state.values()) == declared
    converted, info = convert_datpp({'model': state})
    # the 384 px model keeps the tables of 224 px
    assert (info['arch'], info['img_size'], info['num_classes']) == (ARCH[name], 224, 1000)

    targets = defaultdict(list)
    for key in table:
        targets[rename_key(key)[0]].append(key)
    assert all(len(keys) == 1 for keys in targets.values())
    assert set(targets) == set(converted)
    assert sum(v.numel() for v in converted.values()) == declared

    model = DATPlusPlus(ARCH[name])
    model.load_state_dict({k[len('backbone.'):]: v for k, v in converted.items()
                           if k.startswith('backbone.')}, strict=True)
    assert sum(p.numel() for p in model.parameters()) + 1000 * (model.num_features[-1] + 1) \
        == declared
    src = state['stages.2.attns.1.proj_q.weight']
    assert torch.equal(model.stages[2].blocks[1].attn.q.weight, src[:, :, 0, 0])
    assert torch.equal(model.stages[1].blocks[2].attn.rpb, state['stages.1.attns.2.rpb'])
    assert torch.equal(model.stages[3].blocks[1].mlp.fc2.weight,
                       state['stages.3.mlps.1.linear2.0.weight'][:, :, 0, 0])


@pytest.mark.parametrize('size', ['224', 'odd', 'small'])
@pytest.mark.parametrize('impl', ['auto', 'reference', 'sdpa'])
def test_golden_mini_logits_and_positions(reference_dir, size, impl):
    """The authors' model code with natten 0.14.6 gave these logits and D-block positions;
    at 96 x 128 stage 3 is smaller than the 7 x 7 neighbourhood (zero padding). Every
    attention implementation gives them ('auto' on the CPU: the N blocks' tiled SDPA kernel,
    the D blocks' reference)."""
    checkpoint = torch.load(reference_dir / 'golden_mini_datpp.pth', weights_only=True)
    config = json.loads((reference_dir / 'golden_mini_datpp_config.json').read_text())
    io = torch.load(reference_dir / 'golden_mini_datpp_io.pth', weights_only=True)[size]
    converted, info = convert_datpp(checkpoint)
    assert info['img_size'] == config['img_size']
    assert info['arch']['block_types'] == [''.join(s) for s in config['stage_spec']]
    assert info['arch']['groups'] == config['groups']

    model = DATPlusPlus(info['arch'], img_size=info['img_size'], attn_impl=impl)
    model.load_state_dict({k[9:]: v for k, v in converted.items() if k.startswith('backbone.')})
    with torch.no_grad():
        outs, deform = model.eval().forward_with_deform_info(io['input'])
        logits = F.linear(outs[-1].mean((2, 3)), converted['head.fc.weight'],
                          converted['head.fc.bias'])
    torch.testing.assert_close(logits, io['logits'], atol=1e-5, rtol=0)
    ours = {f'stages.{k[5]}.attns.{k.split("block")[1]}': v for k, v in deform.items()}
    assert sorted(ours) == sorted(io['deform'])
    for key, expected in io['deform'].items():
        for field in ('positions', 'references'):
            torch.testing.assert_close(ours[key][field], expected[field], atol=1e-5, rtol=0)


def test_errors_name_the_key(released):
    table = released['dat_pp_tiny'][1]

    state = random_state(table)
    state['stages.1.attns.0.bogus'] = torch.zeros(3)
    with pytest.raises(ConversionError, match=r"unknown key .*'stages\.1\.attns\.0\.bogus'"):
        convert_datpp({'model': state})

    state = random_state(table)
    del state['stages.2.local_perception_units.3.weight']
    with pytest.raises(ConversionError,
                       match=r"nothing for 'backbone\.stages\.2\.blocks\.3\.lpu\.weight'"):
        convert_datpp({'model': state})

    state = random_state(table)
    state['stages.3.mlps.1.dwc.weight'] = torch.zeros(10, 1, 3, 3)
    with pytest.raises(ConversionError,
                       match=r"'stages\.3\.mlps\.1\.dwc\.weight' has shape \(10, 1, 3, 3\)"):
        convert_datpp({'model': state})

    state = random_state(table)
    state['stages.0.attns.0.rpb'] = torch.zeros(2, 9, 9)
    with pytest.raises(ConversionError, match=r'stages\.0\.attns\.0\.rpb \(2, 9, 9\): only 7x7'):
        convert_datpp({'model': state})

    state = random_state(table)
    del state['stages.1.layer_norms.0.norm.weight']
    with pytest.raises(ConversionError, match="no key 'stages.1.layer_norms.0.norm.weight'"):
        convert_datpp({'model': state})

    with pytest.raises(ConversionError, match='expected a DAT\\+\\+ checkpoint'):
        convert_datpp({'model': {'meta': 'not a tensor'}})


@pytest.mark.slow
def test_converter_cli(reference_dir, repo_root, tmp_path):
    tool = repo_root / 'tools' / 'model_converters' / 'datpp2mmpretrain.py'
    dst = tmp_path / 'out' / 'mini.pth'
    result = subprocess.run([sys.executable, str(tool), str(reference_dir /
                             'golden_mini_datpp.pth'), str(dst)],
                            capture_output=True, text=True, check=True)
    assert 'converted 202 tensors, 682,816 parameters' in result.stdout  # all of the file
    assert '10 classes' in result.stdout
    saved = torch.load(dst, weights_only=True)
    assert saved['meta']['converted_from'] == 'datpp'
    assert 'backbone.stages.0.blocks.0.attn.rpb' in saved['state_dict']

    bad = tmp_path / 'bad.pth'
    torch.save({'model': {'foo.weight': torch.zeros(1)}}, bad)
    result = subprocess.run([sys.executable, str(tool), str(bad), str(tmp_path / 'x.pth')],
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert 'stages.0.layer_norms.0.norm.weight' in result.stderr
    assert not (tmp_path / 'x.pth').exists()

    garbage = tmp_path / 'garbage.pth'
    garbage.write_bytes(b'not a checkpoint')
    result = subprocess.run([sys.executable, str(tool), str(garbage), str(tmp_path / 'x.pth')],
                            capture_output=True, text=True)
    assert result.returncode != 0 and 'cannot be read as a checkpoint' in result.stderr
    assert str(garbage) in result.stderr and len(result.stderr.splitlines()) == 1
