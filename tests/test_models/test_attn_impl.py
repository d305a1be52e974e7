"""attn_impl: what each layer runs, resolved once per layer and device, set per model."""
import pytest
import torch
from mini_configs import DAT_ARCH_2X, DATPP_ARCH

from dat.models import DAT, DATPlusPlus
from dat.models.layers import (DeformableAttention, DeformableAttentionPlusPlus,
                               NeighborhoodAttention, WindowAttention, attention_kernels,
                               attention_layers, set_attention_impl)
from dat.models.layers.common import summarize_kernels

CPU, CUDA = torch.device('cpu'), torch.device('cuda')


def layers():
    return dict(window=WindowAttention(32, 2, 4),
                deformable=DeformableAttention(32, 2, 1, (8, 8), offset_kernel_size=3),
                deformable_pp=DeformableAttentionPlusPlus(32, 2, 1, (8, 8), 3, 2),
                neighborhood=NeighborhoodAttention(32, 2))


@pytest.mark.parametrize('impl,expected', [
    # window, deformable, deformable_pp, neighborhood; on the CPU, then on CUDA
    ('auto', [('reference', 'sdpa'), ('reference', 'sdpa'), ('reference', 'sdpa'),
              ('sdpa', 'sdpa')]),
    ('reference', [('reference', 'reference')] * 4),
    ('sdpa', [('sdpa', 'sdpa')] * 4),
    # FlexAttention where a layer has it (DAT's deformable blocks), SDPA elsewhere
    ('flex', [('sdpa', 'sdpa'), ('flex', 'flex'), ('sdpa', 'sdpa'), ('sdpa', 'sdpa')]),
])
def test_each_layer_declares_its_kernels(impl, expected):
    got = []
    for layer in layers().values():
        set_attention_impl(layer, impl)
        got.append((layer.kernel(CPU), layer.kernel(CUDA)))
    assert got == expected


def test_resolved_once_per_layer_and_device():
    layer = WindowAttention(32, 2, 4)
    assert layer.kernel(CPU) == 'reference'
    layer.auto_kernels = {'cpu': 'sdpa', 'cuda': 'reference'}  # read on first use only
    assert layer.kernel(CPU) == 'reference'
    assert layer.kernel('cuda:1') == 'reference'  # a device type not seen yet
    set_attention_impl(layer, 'auto')  # setting again resolves again
    assert layer.kernel(CPU) == 'sdpa'


def test_unknown_or_impossible_requests_are_refused():
    message = (r"Unknown attention implementation attn_impl='flash'; choose one of 'auto', "
               r"'reference', 'sdpa', 'flex'")
    with pytest.raises(ValueError, match=message):
        DAT(DAT_ARCH_2X, img_size=64, attn_impl='flash')
    with pytest.raises(ValueError, match=message):
        set_attention_impl(WindowAttention(32, 2, 4), 'flash')

    class SdpaOnly(WindowAttention):
        attn_kernels = {'sdpa': 'sdpa'}

    with pytest.raises(ValueError, match=r"SdpaOnly cannot run attn_impl='reference'; it runs "
                       r"'auto', 'sdpa'"):
        SdpaOnly(32, 2, 4, attn_impl='reference')
    model = torch.nn.Sequential(WindowAttention(32, 2, 4), SdpaOnly(32, 2, 4))
    with pytest.raises(ValueError, match=r"^1 \(SdpaOnly\) cannot run attn_impl='flex'"):
        set_attention_impl(model, 'flex')
    assert [layer.attn_impl for layer in model] == ['auto', 'auto']  # nothing changed


def test_attention_kernels_reports_every_block():
    model = DATPlusPlus(dict(DATPP_ARCH, depths=[2, 2, 2, 2],
                             block_types=['ND', 'DN', 'ND', 'DD']), img_size=64)
    kernels = attention_kernels(model)  # the model's device: the CPU
    assert kernels == {f'stages.{i}.blocks.{j}.attn': 'sdpa' if kind == 'N' else 'reference'
                       for i, kinds in enumerate(['ND', 'DN', 'ND', 'DD'])
                       for j, kind in enumerate(kinds)}
    assert set(attention_kernels(model, 'cuda').values()) == {'sdpa'}
    previous = set_attention_impl(model, 'reference')
    assert set(previous.values()) == {'auto'} and model.attn_impl == 'reference'
    assert set(attention_kernels(model).values()) == {'reference'}


def test_log_line_summarises_the_kernels():
    """The backbone's first forward logs this line (in a run's log file)."""
    model = DATPlusPlus(dict(DATPP_ARCH, depths=[2, 2, 2, 2],
                             block_types=['ND', 'DN', 'ND', 'DD']), img_size=64)
    assert summarize_kernels(attention_kernels(model), attention_layers(model)) == (
        "'sdpa' (3 NeighborhoodAttention), 'reference' (5 DeformableAttentionPlusPlus)")
    set_attention_impl(model, 'sdpa')
    assert summarize_kernels(attention_kernels(model), attention_layers(model)) == "'sdpa'"
