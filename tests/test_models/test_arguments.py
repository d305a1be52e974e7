"""Constructor arguments of the DAT and DAT++ backbones: a value a user can get wrong is a
ValueError that names the argument, the value and what is allowed; negative out_indices
count from the last stage (as mmpretrain's SwinTransformer does)."""
import re

import pytest
import torch

from dat.models import DAT, DATPlusPlus

#: Small architectures that build in milliseconds.
MINI = {
    DAT: (dict(embed_dims=[8, 16, 32, 64], depths=[1, 1, 2, 1], num_heads=[1, 2, 4, 8],
               groups=[-1, -1, 2, 4], block_types=['L', 'S', 'LD', 'D']),
          dict(img_size=64, window_size=[4, 4, 4, 2])),
    DATPlusPlus: (dict(embed_dims=[8, 16, 32, 64], depths=[1, 1, 2, 1],
                       num_heads=[1, 2, 4, 8], groups=[1, 1, 2, 4],
                       block_types=['N', 'D', 'ND', 'D']),
                  dict(img_size=64)),
}
BACKBONES = pytest.mark.parametrize('cls', [DAT, DATPlusPlus], ids=['DAT', 'DAT++'])


def build(cls, **kwargs):
    arch, defaults = MINI[cls]
    return cls(dict(arch, **kwargs.pop('arch', {})), **dict(defaults, **kwargs))


def raises(argument: str, value, allowed: str):
    """pytest.raises for a ValueError whose message names the argument, its value (as
    repr) and what is allowed."""
    return pytest.raises(ValueError, match=re.escape(f'{argument}={value!r}') + '.*'
                         + re.escape(allowed))


@BACKBONES
@pytest.mark.parametrize('out_indices, bad', [
    ((0, 1, 2, 4), 4), ((5,), 5), ((-5,), -5), ((0, 1.0), 1.0), (('3',), '3')])
def test_out_indices_out_of_range(cls, out_indices, bad):
    with raises('out_indices', out_indices, 'in -4..3'):
        build(cls, out_indices=out_indices)
    with pytest.raises(ValueError, match=re.escape(f'{bad!r} is out of range')):
        build(cls, out_indices=out_indices)


@BACKBONES
@pytest.mark.parametrize('out_indices', [(0, 0), (3, -1), (1, -3, 2)])
def test_out_indices_name_a_stage_twice(cls, out_indices):
    with raises('out_indices', out_indices, 'names a stage twice'):
        build(cls, out_indices=out_indices)


@BACKBONES
@pytest.mark.parametrize('out_indices', [(), 3, '3', None])
def test_out_indices_not_a_sequence(cls, out_indices):
    with raises('out_indices', out_indices, 'a non-empty sequence of distinct stage indices'):
        build(cls, out_indices=out_indices)


@BACKBONES
@pytest.mark.parametrize('negative, positive', [
    ((-1,), (3,)), ((-4, -3, -2, -1), (0, 1, 2, 3)), ((0, -2), (0, 2)), ((-1, 1), (1, 3))])
def test_negative_out_indices_give_the_positive_ones_outputs(cls, negative, positive):
    torch.manual_seed(0)
    a = build(cls, out_indices=negative).eval()
    torch.manual_seed(0)
    b = build(cls, out_indices=positive).eval()
    assert a.out_indices == b.out_indices == positive
    assert a.num_features == b.num_features
    assert a.state_dict().keys() == b.state_dict().keys()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        outs_a, outs_b = a(x), b(x)
    assert len(outs_a) == len(positive)
    assert all(torch.equal(p, q) for p, q in zip(outs_a, outs_b))
    assert [o.shape[1] for o in outs_a] == a.num_features


@BACKBONES
def test_unsorted_out_indices_come_in_stage_order(cls):
    model = build(cls, out_indices=(3, 0))
    assert model.out_indices == (0, 3) and model.num_features == [8, 64]


@BACKBONES
@pytest.mark.parametrize('frozen_stages', [-2, 5, 1.0, True, '1'])
def test_frozen_stages(cls, frozen_stages):
    with raises('frozen_stages', frozen_stages, 'an int in -1..4'):
        build(cls, frozen_stages=frozen_stages)


@BACKBONES
@pytest.mark.parametrize('frozen_stages', [-1, 0, 4])
def test_frozen_stages_allowed(cls, frozen_stages):
    model = build(cls, frozen_stages=frozen_stages)
    frozen = not next(model.patch_embed.parameters()).requires_grad
    assert frozen == (frozen_stages >= 0)


@pytest.mark.parametrize('window_size, allowed', [
    ([4, 4, 4], 'needs one value or 4'), ((4, 4, 4, 4, 4), 'needs one value or 4'),
    (0, 'each window side must be a positive int'),
    ([4, 4, 0, 2], 'each window side must be a positive int'),
    ([4, 4, 4.0, 2], 'each window side must be a positive int'),
    ('7', 'needs one value or 4')])
def test_window_size(window_size, allowed):
    with raises('window_size', window_size, allowed):
        build(DAT, window_size=window_size)


@pytest.mark.parametrize('cls, smallest', [(DAT, 32), (DATPlusPlus, 33)], ids=['DAT', 'DAT++'])
@pytest.mark.parametrize('img_size', [0, -64, 'small', (64,), (64, 64, 64), (64, 16), 64.0])
def test_img_size(cls, smallest, img_size):
    with raises('img_size', img_size, f'each at least {smallest}'):
        build(cls, img_size=img_size)


@pytest.mark.parametrize('cls, smallest', [(DAT, 32), (DATPlusPlus, 33)], ids=['DAT', 'DAT++'])
def test_img_size_allowed(cls, smallest):
    build(cls, img_size=(smallest, 2 * smallest))
    with raises('img_size', smallest - 1, f'each at least {smallest}'):
        build(cls, img_size=smallest - 1)


@BACKBONES
@pytest.mark.parametrize('rate', [-0.1, 1.0, 1.5, '0.1', None])
def test_drop_path_rate(cls, rate):
    with raises('drop_path_rate', rate, 'a float in [0, 1)'):
        build(cls, drop_path_rate=rate)


@BACKBONES
@pytest.mark.parametrize('value', [0, -3, 3.0])
def test_in_channels(cls, value):
    with raises('in_channels', value, 'a positive int'):
        build(cls, in_channels=value)


@BACKBONES
def test_with_cp(cls):
    with pytest.raises(ValueError, match="with_cp must be True or False, got 'yes'"):
        build(cls, with_cp='yes')


@BACKBONES
@pytest.mark.parametrize('arch, message', [
    (dict(embed_dims=[8, 16, 30, 64]), 'stage 2: embed_dims=30 is not divisible by '
                                       'num_heads=4'),
    (dict(num_heads=[1, 2, 4, 0]), "arch['num_heads']=[1, 2, 4, 0] is not allowed: each "
                                   'entry must be a positive int'),
    (dict(embed_dims=[8, 16, 32, 64.0]), "arch['embed_dims']=[8, 16, 32, 64.0] is not "
                                         'allowed'),
    (dict(groups=[1, 1, 3, 4]), 'stage 2: num_heads=4 is not divisible by groups=3'),
])
def test_arch_values(cls, arch, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        build(cls, arch=arch)


@BACKBONES
def test_arch_of_another_type(cls):
    with pytest.raises(ValueError, match=r"arch=\['tiny'\] is not allowed: it must be one of "
                                         r"\['base', 'small', 'tiny'\] or a dict"):
        cls(['tiny'])
