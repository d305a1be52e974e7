"""The table of backbone families (dat/families.py): what reads it, and a third family."""
import subprocess
import sys

import pytest

from dat.converters.releases import RELEASES
from dat.families import FAMILIES, build_backbone, family_by_key, family_of
from dat.models import DAT, DATPlusPlus


def test_the_two_families():
    assert list(FAMILIES) == ['DAT', 'DAT++']
    assert family_of(DATPlusPlus) is FAMILIES['DAT++'] and family_by_key('dat').backbone is DAT
    assert {r.family for r in RELEASES.values()} == {'DAT', 'DAT++'}
    assert RELEASES['dat_pp_tiny_in1k_224.pth'].paper == 'arXiv:2309.01430'
    assert RELEASES['dat_tiny_in1k_224.pth'].converter == \
        'tools/model_converters/dat2mmpretrain.py'
    assert type(build_backbone(dict(type='mmdet.DATPlusPlus', arch='tiny'))) is DATPlusPlus
    with pytest.raises(ValueError, match=r"'Swin', not one of \['DAT', 'DATPlusPlus'\]"):
        build_backbone(dict(type='Swin'))
    with pytest.raises(ValueError, match=r"unknown family 'swin'; choose one of \['dat', "):
        family_by_key('swin')


#: A third family in a few lines: a backbone class, a converter, one entry. The mmpretrain
#: adapter is imported before the entry, mmdet's and mmseg's after it.
TOY_FAMILY = '''
import torch, timm
import dat.adapters.mmpretrain
from dat.families import Family, TimmModel, register_family
from dat.models import DAT

class ToyDAT(DAT):
    arch_zoo = dict(toy=dict(embed_dims=[8, 16, 32, 64], depths=[1, 1, 1, 1],
                             num_heads=[1, 2, 4, 8], groups=[-1, -1, 2, 4],
                             block_types=['L', 'S', 'D', 'D']))

def convert_toy(checkpoint):
    state = {('head.' if k.startswith('fc.') else 'backbone.') + k: v
             for k, v in checkpoint['model'].items()}
    return state, dict(arch='toy')

register_family(Family(
    name='Toy', key='toy', backbone=ToyDAT, paper='arXiv:0000.00000', convert=convert_toy,
    converter_script='tools/model_converters/toy2mmpretrain.py',
    readme='https://example.invalid/README.md',
    releases={'toy_in1k_64.pth': 'https://example.invalid/toy'},
    timm_models=(TimmModel('toy_mini', 'toy', 'toy_in1k_64.pth', 'Toy at 64 px.', 64,
                           kwargs=dict(img_size=64, window_size=2)),)))
'''

REACH_IT = '''
import mmdet.registry, mmpretrain.registry, mmseg.registry
import dat.adapters.mmdet, dat.adapters.mmseg
from dat.converters.releases import RELEASES, read_release
from dat.families import build_backbone
for library in (mmpretrain, mmdet, mmseg):
    model = library.registry.MODELS.build(dict(type='ToyDAT', arch='toy', img_size=64,
                                               window_size=2, out_indices=(0, 3)))
    assert type(model) is ToyDAT, library
    print(library.__name__, [tuple(o.shape) for o in model(torch.rand(1, 3, 64, 64))])
assert type(build_backbone(dict(type='mmseg.ToyDAT', arch='toy'))) is ToyDAT
print('timm', timm.list_models('toy*'))
try:
    timm.create_model('toy_mini', pretrained=True)
except FileNotFoundError as err:
    assert 'https://example.invalid/toy' in str(err), err
    print('no file:', RELEASES['toy_in1k_64.pth'].converter in str(err))
torch.manual_seed(0)
source = timm.create_model('toy_mini')
release = {'model': {k[len('backbone.'):] if k.startswith('backbone.') else k[len('head.'):]: v
                   for k, v in source.state_dict().items()}}
torch.save(release, 'toy_in1k_64.pth')
state, info = read_release('toy_in1k_64.pth', 'Toy')
print('converter', info, sorted(state) == sorted(source.state_dict()))
loaded = timm.create_model('toy_mini', pretrained=True,
                           pretrained_cfg_overlay=dict(file='toy_in1k_64.pth')).eval()
x = torch.rand(1, 3, 64, 64)
print('loaded', torch.equal(loaded(x), source.eval()(x)), tuple(loaded(x).shape))
'''


@pytest.mark.slow
def test_a_third_family_reaches_every_registry(tmp_path):
    """Declared after import, a toy family is built by mmpretrain's, mmdet's and mmseg's
    registries, is a timm model whose release file the family's converter reads, and is
    in the release table."""
    result = subprocess.run([sys.executable, '-c', TOY_FAMILY + REACH_IT], cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    maps = "[(1, 8, 16, 16), (1, 64, 2, 2)]"
    assert lines == [f'mmpretrain {maps}', f'mmdet {maps}', f'mmseg {maps}',
                     "timm ['toy_mini']", 'no file: True',
                     "converter {'arch': 'toy'} True", 'loaded True (1, 1000)']
