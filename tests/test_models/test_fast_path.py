"""The fast attention kernel (``attn_impl='sdpa'``) gives the reference path's numbers,
forward and backward, and the deformable blocks' bias blocks keep nothing of the bias's
size for the backward. ``test_bilinear.py`` checks the deformable kernel's exactness in
float64; ``tools/analysis_tools/check_fast_path.py`` checks the CUDA kernels.
"""
import pytest
import torch
import torch.nn.functional as F
from mini_configs import DAT_ARCH_2X as MINI
from mini_configs import DATPP_ARCH

from dat.models import DAT, DATPlusPlus
from dat.models.layers import (DeformableAttention, DeformableAttentionPlusPlus, WindowAttention,
                               fast_attention, set_attention_impl)

RTOL = 1e-4


def assert_close(actual, expected, name=''):
    """Max abs difference within RTOL of the tensor's max abs value."""
    scale = expected.abs().max().clamp_min(1e-12)
    err = ((actual - expected).abs().max() / scale).item()
    assert err <= RTOL, f'{name}: relative difference {err:.2e} > {RTOL}'


def run(module, impl, *inputs, seed=0):
    """Forward (with a fixed seed, for drop-path), a weighted-sum backward; outputs, grads."""
    module.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    set_attention_impl(module, impl)
    outs = module(*inputs)
    outs = outs if isinstance(outs, tuple) else (outs, )
    gen = torch.Generator().manual_seed(1)
    loss = sum((o * torch.randn(o.shape, generator=gen)).sum() for o in outs)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}
    return [o.detach() for o in outs], grads


def assert_paths_agree(module, *inputs):
    ref_outs, ref_grads = run(module, 'reference', *inputs)
    fast_outs, fast_grads = run(module, 'sdpa', *inputs)
    for i, (a, b) in enumerate(zip(fast_outs, ref_outs)):
        assert_close(a, b, f'output {i}')
    assert len(ref_grads) == len(list(module.parameters()))
    grads_close(fast_grads, ref_grads)


def sdpa_calls(monkeypatch):
    """Count calls of F.scaled_dot_product_attention."""
    calls = []
    sdpa = F.scaled_dot_product_attention

    def counted(*args, **kwargs):
        calls.append(1)
        return sdpa(*args, **kwargs)
    monkeypatch.setattr(F, 'scaled_dot_product_attention', counted)
    return calls


@pytest.mark.parametrize('impl,uses_sdpa', [
    ('reference', False), ('sdpa', True), ('auto', False)])
def test_attn_impl_reaches_every_layer(monkeypatch, impl, uses_sdpa):
    """The backbone's attn_impl is every attention layer's ('auto' on the CPU: the
    reference)."""
    model = DAT(MINI, img_size=64, window_size=[4, 4, 4, 2], attn_impl=impl).eval()
    layers = [m for m in model.modules() if isinstance(m, (WindowAttention,
                                                           DeformableAttention))]
    assert len(layers) == sum(MINI['depths'])
    assert {layer.attn_impl for layer in layers} == {impl}
    calls = sdpa_calls(monkeypatch)
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
    assert len(calls) == (len(layers) if uses_sdpa else 0)


@pytest.mark.parametrize('shift', [False, True])
@pytest.mark.parametrize('size', [(8, 8), (10, 13)])
def test_window_attention(shift, size):
    torch.manual_seed(0)
    attn = WindowAttention(32, 2, 4, shift=shift).train()
    assert_paths_agree(attn, torch.randn(2, *size, 32))


@pytest.mark.parametrize('size', [(8, 8), (10, 13)])
def test_deformable_attention(size):
    torch.manual_seed(0)
    attn = DeformableAttention(64, 4, 2, (8, 8), offset_kernel_size=5).train()
    with torch.no_grad():
        attn.rpe_table.normal_()  # a table that matters
    assert_paths_agree(attn, torch.randn(2, *size, 64))


@pytest.mark.parametrize('size', [(64, 64), (72, 93)])
def test_backbone_train_mode_with_drop_path(size):
    torch.manual_seed(0)
    model = DAT(MINI, img_size=64, window_size=[4, 4, 4, 2], drop_path_rate=0.3,
                out_indices=(0, 1, 2, 3)).train()
    assert_paths_agree(model, torch.randn(2, 3, *size))


def grads_close(actual, expected, noise=('k.bias', )):
    """assert_close for each gradient; gradients that are zero in exact math (the key bias:
    softmax ignores a constant per query) hold only rounding noise and are compared with
    the largest gradient instead."""
    largest = max(g.abs().max() for g in expected.values())
    assert actual.keys() == expected.keys()
    for name, grad in expected.items():
        if name.endswith(noise):
            err = ((actual[name] - grad).abs().max() / largest).item()
            assert err <= RTOL, f'{name}: difference {err:.2e} of the largest gradient'
        else:
            assert_close(actual[name], grad, name)


def small_bias_blocks(model):
    """Bias blocks at test sizes in every D block of ``model``: blocked past 1000 elements,
    about 2000 per block."""
    for module in model.modules():
        if isinstance(module, DeformableAttention):
            module.bias_block_threshold, module.bias_block_elements = 1000, 2000
    return model


def test_bias_rows():
    """Rows of the query grid per bias block, at DAT-T's and DAT-T++'s shapes."""
    stage2 = DeformableAttention(384, 12, 3, (14, 14), offset_kernel_size=5)
    assert stage2.bias_block_threshold == 2 ** 26 and stage2.bias_block_elements == 2 ** 24
    assert stage2.bias_rows(4, 14, 14, 196) is None  # 1.8M elements
    # DAT-T stage 2 at 896 px, batch 1: 12 heads x 3136 x 3136 = 118M elements
    assert stage2.bias_rows(1, 56, 56, 3136) == 2 ** 24 // (12 * 56 * 3136) == 7
    assert stage2.bias_rows(64, 8, 8, 2 ** 20) == 1  # at least one row
    # with gradients (checkpointed blocks) from 2**22 elements on: DAT-T++ stage 2 at
    # 896 px, batch 1 (4 heads x 112 x 112 queries x 196 keys = 9.8M)
    assert stage2.training_bias_block_threshold == 2 ** 22
    pp = DeformableAttentionPlusPlus(128, 4, 2, (28, 28), 7, 4)
    assert pp.bias_rows(1, 112, 112, 196) is None
    assert pp.bias_rows(1, 112, 112, 196, training=True) == 112  # 1 block
    assert pp.bias_rows(1, 32, 32, 1024, training=True) is None  # 2**22
    pp.training_bias_block_threshold = 2 ** 20  # set on one layer
    assert pp.bias_rows(1, 32, 32, 1024, training=True) == 32


def saved_shapes(module, x):
    """Forward and backward; the shape of every tensor autograd saves for the backward
    outside checkpointed regions (torch.utils.checkpoint keeps none of its own)."""
    shapes = []

    def pack(tensor):
        shapes.append(tuple(tensor.shape))
        return tensor
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        module(x).sum().backward()
    return shapes


@pytest.mark.parametrize('cls,stride', [(DeformableAttention, 1),
                                        (DeformableAttentionPlusPlus, 2)])
def test_blocked_checkpointed_bias_equals_reference(monkeypatch, cls, stride):
    """Past BIAS_BLOCK_THRESHOLD the SDPA path makes the bias in blocks of query rows, each
    checkpointed in training: outputs and every gradient are the reference's, no tensor of
    the bias's size is kept for the backward, and without gradients the blocks run plain.
    DAT++'s D blocks take the same path."""
    torch.manual_seed(0)
    attn = small_bias_blocks(cls(64, 4, 2, (8, 8), offset_kernel_size=5,
                                 offset_stride=stride).train())
    with torch.no_grad():
        attn.rpe_table.normal_()
    x = torch.randn(2, 10, 13, 64)
    keys = 10 * 13 if stride == 1 else 5 * 7
    rows = attn.bias_rows(2, 10, 13, keys) * 13  # queries per block
    assert rows < 130

    ref_out, ref_grads = run(attn, 'reference', x)
    blocks = []
    sdpa_rows = attn._sdpa_rows

    def counted(q, *args):
        blocks.append(q.shape[2])
        return sdpa_rows(q, *args)
    monkeypatch.setattr(attn, '_sdpa_rows', counted)
    out, grads = run(attn, 'sdpa', x)
    assert_close(out[0], ref_out[0], 'output')
    grads_close(grads, ref_grads)
    # each block twice: in the forward, then again in the backward (checkpoint)
    n_blocks = -(-130 // rows)
    assert blocks[:n_blocks] == [rows] * (n_blocks - 1) + [130 - rows * (n_blocks - 1)]
    assert len(blocks) == 2 * n_blocks

    def bias_like(shapes):  # (B, M, rows, keys): the bias, or the attention weights
        return [s for s in shapes if len(s) == 4 and s[:2] == (2, 4) and s[3] == keys]
    assert bias_like(saved_shapes(attn, x)) == []

    blocks.clear()
    with torch.no_grad():
        assert_close(attn(x), ref_out[0], 'output without gradients')
    assert len(blocks) == n_blocks
    attn.bias_block_threshold = attn.training_bias_block_threshold = 2 ** 26
    assert (2, 4, 130, keys) in bias_like(saved_shapes(attn, x))  # one piece: stored


@pytest.mark.parametrize('family', ['dat', 'datpp'])
def test_backbones_with_blocked_bias(family):
    """Whole DAT and DAT++ (train mode, stochastic depth) with the bias in checkpointed
    blocks in every D block: the reference's outputs and gradients."""
    torch.manual_seed(0)
    if family == 'dat':
        model = DAT(MINI, img_size=64, window_size=[4, 4, 4, 2], drop_path_rate=0.3,
                    out_indices=(0, 1, 2, 3))
    else:
        model = DATPlusPlus(dict(DATPP_ARCH, depths=[2, 2, 2, 2],
                                 block_types=['ND', 'DN', 'ND', 'DD']),
                            img_size=64, drop_path_rate=0.3, out_indices=(0, 1, 2, 3))
    small_bias_blocks(model).train()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith('rpe_table'):
                param.normal_()
    x = torch.randn(2, 3, 72, 93)
    ref_outs, ref_grads = run(model, 'reference', x)
    outs, grads = run(model, 'sdpa', x)
    for i, (a, b) in enumerate(zip(outs, ref_outs)):
        assert_close(a, b, f'output {i}')
    grads_close(grads, ref_grads, noise=('attn.k.bias', ))


def test_return_info_uses_reference():
    torch.manual_seed(0)
    model = DAT(MINI, img_size=64, window_size=[4, 4, 4, 2], attn_impl='sdpa').eval()
    x = torch.randn(1, 3, 64, 64)
    outs, info = model.forward_with_deform_info(x)
    assert set(info) == {'stage2.block1', 'stage3.block1'}
    assert info['stage2.block1']['attn_weights'].shape == (1, 4, 16, 16)
    assert_close(outs[0], model(x)[0], 'output')


def test_aligned_mask_keeps_values():
    mask = torch.randn(1, 6, 49, 49)
    aligned = fast_attention.aligned_mask(mask)
    assert torch.equal(aligned, mask) and aligned.stride(-2) % fast_attention.MASK_ALIGN == 0
    q = torch.randn(2, 6, 49, 8)
    assert_close(F.scaled_dot_product_attention(q, q, q, attn_mask=aligned),
                 F.scaled_dot_product_attention(q, q, q, attn_mask=mask), 'sdpa')


def test_no_graph_breaks_under_compile():
    model = DAT(MINI, img_size=64, window_size=[4, 4, 4, 2], drop_path_rate=0.1,
                out_indices=(0, 1, 2, 3), attn_impl='sdpa').train()
    explained = torch._dynamo.explain(model)(torch.randn(1, 3, 72, 93))
    torch._dynamo.reset()
    assert explained.graph_break_count == 0, explained.break_reasons
