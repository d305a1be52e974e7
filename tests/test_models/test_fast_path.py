"""The fast attention kinds (``attn_impl='sdpa'`` and ``'flex'``) give the reference path's
numbers (what of them runs on the CPU), and ``'flex'`` stays bounded and guarded.

SDPA runs forward and backward here. FlexAttention runs forward only on the CPU: its score
function is checked densely, with its gradients, and the compiled kernel through the
deformable layers (number of compilations over many sizes, compile failures, the recompile
limit). ``tools/analysis_tools/check_fast_path.py`` checks the CUDA kernels.
"""
import random
import warnings

import pytest
import torch
import torch.nn.functional as F
from mini_configs import DAT_ARCH_2X as MINI
from mini_configs import DATPP_ARCH

from dat.models import DAT, DATPlusPlus
from dat.models.layers import (DeformableAttention, DeformableAttentionPlusPlus, WindowAttention,
                               fast_attention, set_attention_impl)
from dat.models.layers.deformable_attention import reference_points

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
    assert fast_grads.keys() == ref_grads.keys()
    assert len(ref_grads) == len(list(module.parameters()))
    for name, grad in ref_grads.items():
        assert_close(fast_grads[name], grad, name)


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
    ('reference', False), ('sdpa', True), ('flex', True), ('auto', False)])
def test_attn_impl_reaches_every_layer(monkeypatch, impl, uses_sdpa):
    """The backbone's attn_impl is every attention layer's ('auto' on the CPU: the
    reference; 'flex' at these sizes: SDPA)."""
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


@pytest.fixture
def no_warnings_given(monkeypatch):
    """warn_once's memory starts empty and is put back afterwards."""
    monkeypatch.setattr(fast_attention, '_warned', set())


def test_flex_training_runs_sdpa_and_warns_once(monkeypatch, no_warnings_given):
    """'flex' is for inference: a 'flex' layer that needs gradients warns once and runs the
    SDPA path (not FlexAttention, whose position gradient is wrong at detection sizes),
    with SDPA's outputs and gradients; without gradients it runs FlexAttention."""
    torch.manual_seed(0)
    attn = DeformableAttention(64, 4, 2, (16, 16), offset_kernel_size=5, attn_impl='flex').train()
    with torch.no_grad():
        attn.rpe_table.normal_()
    x = torch.randn(1, 16, 16, 64)  # 256 keys: FlexAttention's range
    flex_calls = []
    flex = fast_attention.deformable_flex_attention

    def counted(*args, **kwargs):
        flex_calls.append(1)
        return flex(*args, **dict(kwargs, compiled=False))  # eager: forward-only on the CPU
    monkeypatch.setattr(fast_attention, 'deformable_flex_attention', counted)
    with pytest.warns(UserWarning) as caught:
        out, grads = run(attn, 'flex', x)
    assert [str(w.message) for w in caught] == [fast_attention.FLEX_TRAINING_WARNING]
    assert "attn_impl 'flex' is for inference" in fast_attention.FLEX_TRAINING_WARNING
    assert flex_calls == [] and attn.flex_guard.reason is None
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # no second warning
        again, _ = run(attn, 'flex', x)
    sdpa_out, sdpa_grads = run(attn, 'sdpa', x)
    assert torch.equal(out[0], sdpa_out[0]) and torch.equal(again[0], sdpa_out[0])
    assert grads.keys() == sdpa_grads.keys()
    assert all(torch.equal(grads[n], sdpa_grads[n]) for n in grads)
    ref_out, ref_grads = run(attn, 'reference', x)
    assert_close(out[0], ref_out[0], 'output')
    grads_close(grads, ref_grads)

    set_attention_impl(attn, 'flex')
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore')  # eager FlexAttention asks for torch.compile
        inferred = attn(x)
    assert flex_calls == [1]
    assert_close(inferred, ref_out[0], 'flex inference output')


def test_flex_model_trains_with_sdpa(monkeypatch, no_warnings_given):
    """A whole 'flex' model takes a training step with the SDPA path's numbers and says why."""
    model, _ = mini_pair('flex')
    model.train()
    monkeypatch.setattr(fast_attention, 'deformable_flex_attention', None)  # must not run
    x = torch.randn(1, 3, 256, 256)  # stage 3: 16 x 16 = 256 keys
    with pytest.warns(UserWarning, match="attn_impl 'flex' is for inference: where gradients "
                      'are needed the deformable attention layers run SDPA'):
        flex_outs, flex_grads = run(model, 'flex', x)
    sdpa_outs, sdpa_grads = run(model, 'sdpa', x)
    assert all(torch.equal(a, b) for a, b in zip(flex_outs, sdpa_outs))
    assert all(torch.equal(flex_grads[n], sdpa_grads[n]) for n in sdpa_grads)
    assert len(flex_grads) == len(list(model.parameters()))


@pytest.fixture
def small_bias_blocks(monkeypatch):
    """Bias blocks at test sizes: blocked past 1000 elements, about 700 per block."""
    monkeypatch.setattr(fast_attention, 'BIAS_BLOCK_THRESHOLD', 1000)
    monkeypatch.setattr(fast_attention, 'BIAS_BLOCK_ELEMENTS', 700)


def test_bias_row_block():
    assert fast_attention.BIAS_BLOCK_THRESHOLD == 2 ** 26
    assert fast_attention.bias_row_block(4, 12, 196, 196) is None  # 1.8M elements
    # DAT-T stage 2 at 896 px, batch 1: 12 heads x 3136 x 3136 = 118M elements
    assert fast_attention.bias_row_block(1, 12, 3136, 3136) == 2 ** 24 // (12 * 3136) == 445
    assert fast_attention.bias_row_block(64, 64, 8, 2 ** 20) == 1  # at least one row
    # with gradients (checkpointed blocks) from 2**22 elements on: DAT-T++ stage 1 at 896 px,
    # batch 1 (2 heads x 50176 queries x 784 keys = 79M) and stage 2 (4 x 12544 x 196 = 9.8M)
    assert fast_attention.TRAINING_BIAS_BLOCK_THRESHOLD == 2 ** 22
    assert fast_attention.bias_row_block(1, 4, 12544, 196) is None
    assert fast_attention.bias_row_block(1, 4, 12544, 196, training=True) == 12544  # 1 block
    assert fast_attention.bias_row_block(1, 2, 1024, 1024, training=True) is None  # 2**21


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
def test_blocked_checkpointed_bias_equals_reference(small_bias_blocks, monkeypatch, cls,
                                                    stride):
    """Past BIAS_BLOCK_THRESHOLD the SDPA path makes the bias in blocks of query rows, each
    checkpointed in training: outputs and every gradient are the reference's, no tensor of
    the bias's size is kept for the backward, and without gradients the blocks run plain.
    DAT++'s D blocks take the same path."""
    torch.manual_seed(0)
    attn = cls(64, 4, 2, (8, 8), offset_kernel_size=5, offset_stride=stride).train()
    with torch.no_grad():
        attn.rpe_table.normal_()
    x = torch.randn(2, 10, 13, 64)
    keys = 10 * 13 if stride == 1 else 5 * 7
    rows = fast_attention.bias_row_block(2, 4, 130, keys)
    assert rows is not None and rows < 130

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
    monkeypatch.setattr(fast_attention, 'BIAS_BLOCK_THRESHOLD', 2 ** 26)
    assert (2, 4, 130, keys) in bias_like(saved_shapes(attn, x))  # one piece: stored


@pytest.mark.parametrize('family', ['dat', 'datpp'])
def test_backbones_with_blocked_bias(small_bias_blocks, family):
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
    model.train()
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


def random_positions(B, G, H, W):
    offset = (torch.rand(B, G, H, W, 2) * 2 - 1) * torch.tensor([2 / H, 2 / W])
    return reference_points(H, W, torch.float32, 'cpu') + offset


@pytest.mark.parametrize('size', [(8, 8), (10, 13)])
def test_fast_bias_equals_position_bias(size):
    """The FlexAttention score function, evaluated for all (b, h, q, k) at once, gives the
    reference bias and the same gradients for the table and the positions."""
    torch.manual_seed(0)
    B, G, M, (H, W) = 2, 2, 4, size
    attn = DeformableAttention(64, M, G, (8, 8), offset_kernel_size=5)
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
    """The whole FlexAttention call, with padding of 16x17=272 keys to 512, in eager mode
    (forward only: FlexAttention has no backward on the CPU)."""
    torch.manual_seed(0)
    B, G, M, H, W, d = 2, 2, 4, 16, 17, 16
    attn = DeformableAttention(M * d, M, G, (16, 16), offset_kernel_size=5)
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
                out_indices=(0, 1, 2, 3), attn_impl='sdpa').train()
    explained = torch._dynamo.explain(model)(torch.randn(1, 3, 72, 93))
    torch._dynamo.reset()
    assert explained.graph_break_count == 0, explained.break_reasons


#: Input sizes whose stage-3 maps (stride 16) have 256 to 1024 tokens: FlexAttention's range.
FLEX_SIZES = [(h, w) for h in range(256, 513, 32) for w in range(256, 513, 32)]


@pytest.fixture
def fresh_flex():
    """A fresh torch.compile state and no warnings given yet."""
    torch._dynamo.reset()
    fast_attention._warned.clear()
    yield
    torch._dynamo.reset()


def mini_pair(impl):
    """The mini DAT with ``attn_impl=impl`` and its reference twin (same weights), eval."""
    torch.manual_seed(0)
    kwargs = dict(arch=MINI, img_size=256, window_size=[4, 4, 4, 2], out_indices=(2, 3))
    model = DAT(attn_impl=impl, **kwargs).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith('rpe_table'):
                param.normal_()  # tables that matter
    reference = DAT(attn_impl='reference', **kwargs).eval()
    reference.load_state_dict(model.state_dict())
    return model, reference


def flex_graphs():
    from torch._dynamo.utils import counters
    return counters['stats']['unique_graphs']


@pytest.mark.slow
def test_flex_compiles_a_handful_of_graphs_over_20_sizes(fresh_flex):
    """Compiled FlexAttention forward on the CPU: 20 input sizes (stage-3 maps of 256 to
    1024 tokens, stage-4 maps of 64 to 256) compile a graph per token bucket and layer
    shape, not per size, and give the reference numbers."""
    model, reference = mini_pair('flex')
    sizes = random.Random(0).sample(FLEX_SIZES, 20)
    sizes[:2] = [(256, 256), (512, 512)]  # both ends of the range
    calls = []
    flex = fast_attention.deformable_flex_attention

    def counted(q, *args, **kwargs):
        calls.append(fast_attention.flex_bucket(q.shape[2]))
        return flex(q, *args, **kwargs)
    before = flex_graphs()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('error')  # no fallback warning
        fast_attention.deformable_flex_attention = counted
        try:
            for size in sizes:
                x = torch.randn(1, 3, *size)
                for i, (a, b) in enumerate(zip(model(x), reference(x))):
                    assert_close(a, b, f'{size} output {i}')
        finally:
            fast_attention.deformable_flex_attention = flex
    graphs = flex_graphs() - before
    # stage 3: buckets 256, 512, 1024; stage 4 (at 512x512 only): 256
    assert sorted(set(calls)) == [256, 512, 1024] and len(calls) > 20
    print(f'\n{len(sizes)} sizes, {len(calls)} FlexAttention calls: {graphs} graphs compiled')
    assert 1 <= graphs <= 4
    assert all(m.flex_guard.reason is None for m in model.modules()
               if isinstance(m, DeformableAttention))


def test_flex_compile_failure_warns_once_and_gives_reference_numbers(fresh_flex, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError('forced compile failure\nsecond line')
    monkeypatch.setattr(fast_attention, '_compiled_flex_attention', lambda: broken)
    model, reference = mini_pair('flex')
    with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        for size in [(512, 512), (288, 320)]:
            x = torch.randn(1, 3, *size)
            for i, (a, b) in enumerate(zip(model(x), reference(x))):
                assert_close(a, b, f'{size} output {i}')
    messages = [str(w.message) for w in caught]
    assert messages == ["attn_impl 'flex': FlexAttention failed: RuntimeError: forced compile "
                        'failure; the deformable attention layers where this happens use SDPA '
                        'with a materialised position bias for the rest of the run']
    layers = [m for m in model.modules() if isinstance(m, DeformableAttention)]
    assert [m.flex_guard.reason for m in layers] == [
        'FlexAttention failed: RuntimeError: forced compile failure'] * len(layers)


def test_flex_recompile_limit_switches_to_sdpa(fresh_flex, monkeypatch):
    """Past FLEX_RECOMPILE_LIMIT graphs torch.compile raises (instead of running eager
    FlexAttention); the layer that hit it warns and runs SDPA."""
    monkeypatch.setattr(fast_attention, 'FLEX_RECOMPILE_LIMIT', 1)
    attn = DeformableAttention(64, 4, 2, (16, 16), offset_kernel_size=5, attn_impl='flex').eval()
    reference = DeformableAttention(64, 4, 2, (16, 16), offset_kernel_size=5,
                                    attn_impl='reference').eval()
    reference.load_state_dict(attn.state_dict())
    with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        for size in [(16, 16), (16, 17), (24, 24)]:  # buckets 256, 512, 1024
            x = torch.randn(1, *size, 64)
            assert_close(attn(x), reference(x), f'{size} output')
    assert [str(w.message) for w in caught] == [
        "attn_impl 'flex': FlexAttention hit its recompile limit (FLEX_RECOMPILE_LIMIT=1 "
        'graphs); the deformable attention layers where this happens use SDPA with a '
        'materialised position bias for the rest of the run']
    assert attn.flex_guard.reason.startswith('FlexAttention hit its recompile limit')


def test_prefix_block_mask_skips_padding():
    mask = fast_attention.prefix_block_mask(300, 512, torch.device('cpu'))
    dense = mask.to_dense()[0, 0]  # (query blocks, key blocks): 1 where computed
    assert dense.tolist() == [[1, 1, 1, 0]] * 3 + [[0, 0, 0, 0]]
    assert [fast_attention.flex_bucket(n) for n in (1, 256, 257, 1024, 1025)] == [
        256, 256, 512, 1024, 2048]
