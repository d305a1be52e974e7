"""docs/own_network.md, code block by code block: the example network runs at the sizes it
prints (and prints what its comments say), its outputs and gradients are finite, the
claims about sizes and layouts hold, and the torch.compile block compiles it in one graph
with the eager numbers (the 'eager' backend, so no code is generated)."""
import contextlib
import io
import re
from pathlib import Path

import pytest
import torch

from dat.models.layers import (DeformableAttention, DeformableAttentionPlusPlus, attention_kernels,
                               set_attention_impl)

DOC = Path(__file__).resolve().parents[2] / 'docs' / 'own_network.md'


def python_blocks():
    return re.findall(r'^```python\n(.*?)^```', DOC.read_text(), re.M | re.S)


@pytest.fixture(scope='module')
def example():
    """The namespace of the first block after running it, and what it printed."""
    torch.manual_seed(0)
    namespace, out = {}, io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(python_blocks()[0], str(DOC), 'exec'), namespace)
    return namespace, out.getvalue()


def test_the_example_prints_what_its_comments_say(example):
    namespace, printed = example
    expected = re.findall(r'^# (\(.*\))$', python_blocks()[0], re.M)
    assert expected == ['(2, 10, 14, 14)', '(2, 10, 9, 20)']
    assert printed.splitlines() == expected


def test_the_example_trains_at_any_size(example):
    """Finite outputs and gradients, and the offset networks get gradients (the keys move);
    with the page's network and with its DAT++ mixer added."""
    namespace = example[0]
    torch.manual_seed(0)
    plusplus = namespace['DeformableMixer'](64, num_heads=4, groups=2, fmap_size=(14, 14),
                                            plusplus=True)
    net = torch.nn.Sequential(*namespace['net'][:2], plusplus, namespace['net'][2]).train()
    layers = [m for m in net.modules() if isinstance(m, DeformableAttention)]
    assert [type(m) for m in layers] == [DeformableAttention, DeformableAttentionPlusPlus]
    assert plusplus.block.attn.offset.dwconv.stride == (2, 2)
    for size in [(56, 56), (37, 83), (20, 12)]:
        net.zero_grad()
        out = net(torch.randn(2, 3, *size))
        assert out.shape == (2, 10, size[0] // 4, size[1] // 4)
        assert torch.isfinite(out).all()
        out.square().mean().backward()
        assert all(torch.isfinite(p.grad).all() for p in net.parameters())
        assert all(m.offset.proj.weight.grad.abs().sum() > 0 for m in layers)


def test_the_layers_take_channels_last_only():
    layer = DeformableAttention(16, 2, 1, (8, 8), 3)
    assert layer(torch.randn(1, 5, 7, 16)).shape == (1, 5, 7, 16)
    with pytest.raises(RuntimeError):
        layer(torch.randn(1, 16, 5, 7))


def test_the_sizes_the_page_gives():
    """DAT's layer at 1 x 1; DAT++'s needs sides of 2 (NaN at 1), and at a side of at most
    the stride its single row of keys is clamped to the border."""
    torch.manual_seed(0)
    dat = DeformableAttention(16, 2, 1, (8, 8), 3)
    assert torch.isfinite(dat(torch.randn(1, 1, 1, 16))).all()
    plusplus = DeformableAttentionPlusPlus(16, 2, 1, (8, 8), 3, offset_stride=2)
    assert torch.isfinite(plusplus(torch.randn(1, 3, 5, 16))).all()
    assert not torch.isfinite(plusplus(torch.randn(1, 1, 5, 16))).all()
    positions = plusplus.deform_info(torch.randn(1, 2, 5, 16))['positions']
    assert positions.shape[2] == 1 and (positions[..., 0] == 1).all()


def test_kernels_are_reported_and_set_on_any_module(example):
    net = example[0]['net']
    assert set(attention_kernels(net, 'cpu').values()) == {'reference'}
    assert set(set_attention_impl(net, 'sdpa').values()) == {'auto'}
    try:
        assert set(attention_kernels(net, 'cpu').values()) == {'sdpa'}
    finally:
        set_attention_impl(net, 'auto')


@pytest.mark.slow
def test_the_compile_block(example, fresh_dynamo, monkeypatch):
    """The page's torch.compile call, with fullgraph=True (no graph break) and the 'eager'
    backend added."""
    namespace = dict(example[0])
    net = namespace['net'].eval()
    real_compile = torch.compile
    monkeypatch.setattr(torch, 'compile', lambda model: real_compile(
        model, backend='eager', fullgraph=True))
    torch.manual_seed(1)
    with torch.no_grad():
        exec(compile(python_blocks()[1], str(DOC), 'exec'), namespace)
        torch.manual_seed(1)
        expected = net(torch.randn(2, 3, 64, 96))
    assert namespace['out'].shape == (2, 10, 16, 24)
    assert torch.allclose(namespace['out'], expected, rtol=1e-5, atol=1e-6)
