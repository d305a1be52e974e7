import subprocess
import sys

import pytest

from dat.models import DAT, DATPlusPlus


@pytest.mark.parametrize('backbone', [DAT, DATPlusPlus])
@pytest.mark.parametrize('library', ['mmpretrain', 'mmdet', 'mmseg'])
def test_built_from_each_library_registry(library, backbone):
    __import__(f'dat.adapters.{library}')
    registry = __import__(f'{library}.registry', fromlist=['MODELS']).MODELS
    model = registry.build(dict(type=backbone.__name__, arch='tiny', out_indices=(0, 1, 2, 3)))
    assert type(model) is backbone
    assert model.out_indices == (0, 1, 2, 3)


@pytest.mark.slow
def test_core_runs_without_mmcv_mmdet_mmseg_mmpretrain():
    """The backbone core imports only torch, timm, einops and mmengine."""
    code = '''
import sys
for name in ('mmcv', 'mmdet', 'mmseg', 'mmpretrain'):
    sys.modules[name] = None  # any import of them fails
import torch
from dat.models import DAT
from dat.converters import convert_dat2022
from dat.converters.datpp import convert_datpp
from dat.models import DATPlusPlus
model = DAT('tiny').eval()
with torch.no_grad():
    print(tuple(model(torch.rand(1, 3, 64, 96))[0].shape))
    print(tuple(DATPlusPlus('tiny').eval()(torch.rand(1, 3, 64, 96))[0].shape))
'''
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ['(1,', '768,', '2,', '3)', '(1,', '512,', '2,', '3)']
