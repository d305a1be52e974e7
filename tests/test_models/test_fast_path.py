"""The fast attention path gives the reference path's numbers (what of it runs on the CPU).

On the CPU the fast path is SDPA for every block (FlexAttention has no CPU backward); the
FlexAttention score function is checked here densely, with its gradients, and through eager
FlexAttention forward. ``tools/analysis_tools/check_fast_path.py`` checks the CUDA kernels.
"""
import warnings

import pytest
import torch
import torch.nn.functional as F

from dat.models import DAT
from dat.models.layers import (DeformableAttention, WindowAttention, attention_impl, fast_attention,
                               get_attention_impl, set_attention_impl)
from dat.models.layers.common import use_fast_attention
from dat.models.layers.deformable_attention import reference_points

MINI = dict(embed_dims=[16, 32, 64, 64], depths=[2, 2, 2, 2], num_heads=[1, 2, 4, 4],
            groups=[-1, -1, 2, 2], block_types=['LS', 'LS', 'LD', 'SD'])
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
    with attention_impl(impl):
        outs = module(*inputs)
    outs = outs if isinstance(outs, tuple) else (outs, )
    gen = torch.Generator().manual_seed(1)
    loss = sum((o * torch.randn(o.shape, generator=gen)).sum() for o in outs)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}
    return [o.detach() for o in outs], grads


def assert_paths_agree(module, *inputs):
    ref_outs, ref_grads = run(module, 'reference', *inputs)
    fast_outs, fast_grads = run(module, 'fast', *inputs)
    for i, (a, b) in enumerate(zip(fast_outs, ref_outs)):
        assert_close(a, b, f'output {i}')
    assert fast_grads.keys() == ref_grads.keys()
    assert len(ref_grads) == len(list(module.parameters()))
    for name, grad in ref_grads.items():
        assert_close(fast_grads[name], grad, name)


def test_impl_choice():
    assert get_attention_impl() == 'auto'
    x = torch.zeros(1)
    assert not use_fast_attention(x)  # auto: reference on the CPU
    with attention_impl('fast'):
        assert get_attention_impl() == 'fast' and use_fast_attention(x)
        with attention_impl('reference'):
            assert not use_fast_attention(x)
        assert get_attention_impl() == 'fast'
    assert get_attention_impl() == 'auto'
    with pytest.raises(ValueError, match=r"Unknown attention impl 'flash'; choose one of "
                       r"\('auto', 'reference', 'fast'\)"):
        set_attention_impl('flash')
    assert get_attention_impl() == 'auto'


@pytest.mark.parametrize('shift', [False, True])
@pytest.mark.parametrize('size', [(8, 8), (10, 13)])
def test_window_attention(shift, size):
    torch.manual_seed(0)
    attn = WindowAttention(32, 2, 4, shift=shift).train()
    assert_paths_agree(attn, torch.randn(2, *size, 32))


@pytest.mark.parametrize('size', [(8, 8), (10, 13)])
def test_deformable_attention(size):
    torch.manual_seed(0)
    attn = DeformableAttention(64, 4, 2, (8, 8), stage_index=2).train()
    with torch.no_grad():
        attn.rpe_table.normal_()  # a table that matters
    assert_paths_agree(attn, torch.randn(2, *size, 64))


@pytest.mark.parametrize('size', [(64, 64), (72, 93)])
def test_backbone_train_mode_with_drop_path(size):
    torch.manual_seed(0)
    model = DAT(MINI, img_size=64, window_size=[4, 4, 4, 2], drop_path_rate=0.3,
                out_indices=(0, 1, 2, 3)).train()
    assert_paths_agree(model, torch.randn(2, 3, *size))


def test_fast_on_cpu_falls_back_clearly():
    torch.manual_seed(0)
    attn = DeformableAttention(64, 4, 2, (16, 16), stage_index=2)
    x = torch.randn(1, 16, 16, 64)  # 256 keys: FlexAttention's range, which needs CUDA
    fast_attention._warned.clear()
    with attention_impl('fast'), pytest.warns(UserWarning, match="attention impl 'fast' on "
                                              'cpu: deformable blocks use SDPA'):
        out = attn(x)
    assert_close(out, attn(x), 'output')


def test_return_info_uses_reference():
    torch.manual_seed(0)
    model = DAT(MINI, img_size=64, window_size=[4, 4, 4, 2]).eval()
    x = torch.randn(1, 3, 64, 64)
    with attention_impl('fast'):
        outs, info = model.forward_with_deform_info(x)
    assert set(info) == {'stage2.block1', 'stage3.block1'}
    assert info['stage2.block1']['attn_weights'].shape == (1, 4, 16, 16)
    assert_close(outs[0], model(x)[0], 'output')


def random_positions(B, G, H, W):
    offset = (torch.rand(B, G, H, W, 2) * 2 - 1) * torch.tensor([2 / H, 2 / W])
    return reference_points(H, W, torch.float32, 'cpu') + offset


@pytest.mark.parametrize('size', [(8, 8), (10, 13)])
def test_fast_bias_equals_position_bias(size):
    """The FlexAttention score function, evaluated for all (b, h, q, k) at once, gives the
    reference bias and the same gradients for the table and the positions."""
    torch.manual_seed(0)
    B, G, M, (H, W) = 2, 2, 4, size
    attn = DeformableAttention(64, M, G, (8, 8), stage_index=2)
    with torch.no_grad():
        attn.rpe_table.normal_()
    positions = random_positions(B, G, H, W).requires_grad_()
    weights = torch.randn(B, M, H * W, H * W)

    reference = attn.position_bias(positions, H, W)
    ref_grads = torch.autograd.grad((reference * weights).sum(), [attn.rpe_table, positions])

    keys = positions.reshape(B, G, H * W, 2)
    queries = reference_points(H, W, torch.float32, 'cpu').reshape(-1, 2)
    terms = fast_attention.bias_coordinates(attn.rpe_table, keys, queries)
    score_mod = fast_attention.bilinear_bias_score_mod(attn.rpe_table, *terms, M // G)
    n = H * W
    dense = score_mod(torch.zeros(()), torch.arange(B).view(B, 1, 1, 1),
                      torch.arange(M).view(1, M, 1, 1), torch.arange(n).view(1, 1, n, 1),
                      torch.arange(n).view(1, 1, 1, n))
    grads = torch.autograd.grad((dense * weights).sum(), [attn.rpe_table, positions])
    assert_close(dense, reference, 'score_mod: bias')
    assert_close(grads[0], ref_grads[0], 'score_mod: table grad')
    assert_close(grads[1], ref_grads[1], 'score_mod: positions grad')


def test_flex_attention_forward_eager_cpu():
    """The whole FlexAttention call, with padding of 16x17=272 keys to 384, in eager mode
    (forward only: FlexAttention has no backward on the CPU)."""
    torch.manual_seed(0)
    B, G, M, H, W, d = 2, 2, 4, 16, 17, 16
    attn = DeformableAttention(M * d, M, G, (16, 16), stage_index=2)
    with torch.no_grad():
        attn.rpe_table.normal_()
    positions = random_positions(B, G, H, W)
    q, k, v = torch.randn(3, B, M, H * W, d).unbind(0)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore')  # eager FlexAttention asks for torch.compile
        out = fast_attention.deformable_flex_attention(
            q, k, v, attn.rpe_table, positions.reshape(B, G, H * W, 2),
            reference_points(H, W, torch.float32, 'cpu').reshape(-1, 2), attn.scale,
            compiled=False)
        logits = q @ k.transpose(-2, -1) * attn.scale + attn.position_bias(positions, H, W)
    assert out.shape == (B, M, H * W, d)
    assert_close(out, logits.softmax(-1) @ v, 'output')


def test_aligned_mask_keeps_values():
    mask = torch.randn(1, 6, 49, 49)
    aligned = fast_attention.aligned_mask(mask)
    assert torch.equal(aligned, mask) and aligned.stride(-2) % fast_attention.MASK_ALIGN == 0
    q = torch.randn(2, 6, 49, 8)
    assert_close(F.scaled_dot_product_attention(q, q, q, attn_mask=aligned),
                 F.scaled_dot_product_attention(q, q, q, attn_mask=mask), 'sdpa')


def test_no_graph_breaks_under_compile():
    model = DAT(MINI, img_size=64, window_size=[4, 4, 4, 2], drop_path_rate=0.1,
                out_indices=(0, 1, 2, 3)).train()
    with attention_impl('fast'):
        explained = torch._dynamo.explain(model)(torch.randn(1, 3, 72, 93))
    torch._dynamo.reset()
    assert explained.graph_break_count == 0, explained.break_reasons
