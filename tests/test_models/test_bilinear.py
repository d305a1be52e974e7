"""The deformable blocks' 'sdpa' kernel without grid_sample is exact against the reference.

float64: to 1e-12 absolute, outputs and every gradient; float32: to 1e-5 relative. At odd
sizes, maps of another size than the position table, non-square maps and tables, and
offsets that push taps outside the map and the table.
"""
import pytest
import torch
import torch.nn.functional as F
from einops import rearrange
from mini_configs import DAT_ARCH_2X, DATPP_ARCH

from dat.models import DAT, DATPlusPlus
from dat.models.layers import DeformableAttention, DeformableAttentionPlusPlus, set_attention_impl
from dat.models.layers.bilinear import axis_weights, sample_rows, separable_position_bias
from dat.models.layers.deformable_attention import reference_axis, sample_position_bias

F64_ATOL = 1e-12
F32_RTOL = 1e-5


def grid_sample_rows(x, positions):
    """Step 4 as the reference samples it."""
    G = positions.shape[1]
    grid = rearrange(positions, 'b g hk wk yx -> (b g) hk wk yx').flip(-1)
    out = F.grid_sample(rearrange(x, 'b h w (g c) -> (b g) c h w', g=G), grid,
                        mode='bilinear', align_corners=True)
    return rearrange(out, '(b g) c hk wk -> b (hk wk) (g c)', g=G)


def value_and_grads(fn, inputs, weights):
    out = fn(*inputs)
    return out, torch.autograd.grad((out * weights).sum(), inputs)


def assert_f64(actual, expected, name):
    err = (actual - expected).abs().max().item()
    assert err <= F64_ATOL, f'{name}: {err:.2e} > {F64_ATOL}'


@pytest.mark.parametrize('spread', [0.5, 1.6])  # 1.6: many taps outside the map
@pytest.mark.parametrize('size', [(9, 13), (7, 7)])
def test_gathered_rows_equal_grid_sample(size, spread):
    torch.manual_seed(0)
    B, G, (H, W), C = 2, 3, size, 24
    x = torch.randn(B, H, W, C, dtype=torch.float64, requires_grad=True)
    positions = ((torch.rand(B, G, 5, 4, 2, dtype=torch.float64) * 2 - 1) * spread)
    positions.requires_grad_()
    weights = torch.randn(B, 20, C, dtype=torch.float64)
    ref, ref_grads = value_and_grads(grid_sample_rows, (x, positions), weights)
    out, grads = value_and_grads(sample_rows, (x, positions), weights)
    assert out.shape == ref.shape and out.is_contiguous()
    assert_f64(out, ref, 'sampled rows')
    assert_f64(grads[0], ref_grads[0], 'map gradient')
    assert_f64(grads[1], ref_grads[1], 'positions gradient')
    if spread > 1:  # some taps fell outside the map, and had no weight
        assert (positions.abs() > 1).any()


def test_axis_weights_are_bilinear_taps():
    coords = torch.tensor([-0.5, 0.0, 1.25, 2.0, 3.5], dtype=torch.float64,
                          requires_grad=True)
    weights = axis_weights(coords, 3)
    assert weights.tolist() == [[0.5, 0, 0], [1, 0, 0], [0, 0.75, 0.25], [0, 0, 1], [0, 0, 0]]
    # grid_sample's gradient at an integer point: -1 on the cell, +1 on the next one.
    grad, = torch.autograd.grad(weights[1, 1], coords)
    assert grad.tolist() == [0, 1, 0, 0, 0]


def reference_bias(table, ys, xs, keys):
    queries = torch.stack(torch.meshgrid(ys, xs, indexing='ij'), -1)
    return sample_position_bias(table, queries, keys[:, :, :, None])


def separable_bias(table, ys, xs, keys):
    bias = separable_position_bias(table, (ys, xs), keys)
    return bias.reshape(keys.shape[0], table.shape[0], len(ys) * len(xs), keys.shape[2])


@pytest.mark.parametrize('table_size,queries', [
    ((27, 27), (14, 14)),   # DAT-T's stage-2 table at its own size
    ((15, 11), (9, 13)),    # another size than the map, non-square
    ((13, 13), (5, 3)),     # a table larger than the map
])
@pytest.mark.parametrize('exporting', [False, True])  # True: the branch torch.export traces
def test_separable_bias_equals_grid_sample(table_size, queries, exporting, monkeypatch):
    asked = []
    # Only the separable bias branches on it; the reference (grid_sample) does not.
    monkeypatch.setattr(torch.compiler, 'is_exporting', lambda: asked.append(1) or exporting)
    torch.manual_seed(0)
    B, G, M, Nk = 2, 3, 12, 23
    table = torch.randn(M, *table_size, dtype=torch.float64, requires_grad=True)
    ys = reference_axis(queries[0], torch.float64, 'cpu')
    xs = reference_axis(queries[1], torch.float64, 'cpu')
    # Keys up to 1.5 out: displacements of up to 1.25, past the table's edge.
    keys = ((torch.rand(B, G, Nk, 2, dtype=torch.float64) * 2 - 1) * 1.5).requires_grad_()
    weights = torch.randn(B, M, queries[0] * queries[1], Nk, dtype=torch.float64)
    ref, ref_grads = value_and_grads(lambda t, k: reference_bias(t, ys, xs, k),
                                     (table, keys), weights)
    out, grads = value_and_grads(lambda t, k: separable_bias(t, ys, xs, k),
                                 (table, keys), weights)
    assert_f64(out, ref, 'bias')
    assert_f64(grads[0], ref_grads[0], 'table gradient')
    assert_f64(grads[1], ref_grads[1], 'positions gradient')
    assert asked, 'the separable bias did not ask whether it is exported'


def layer_run(layer, impl, x):
    """Output, input gradient and parameter gradients of one forward and backward."""
    layer.zero_grad(set_to_none=True)
    set_attention_impl(layer, impl)
    x = x.clone().requires_grad_()
    out = layer(x)
    gen = torch.Generator().manual_seed(1)
    (out * torch.randn(out.shape, generator=gen, dtype=out.dtype)).sum().backward()
    grads = {name: p.grad for name, p in layer.named_parameters()}
    grads['input'] = x.grad
    return out.detach(), grads


def compare(layer, x, dtype):
    ref_out, ref_grads = layer_run(layer, 'reference', x)
    out, grads = layer_run(layer, 'sdpa', x)
    assert ref_grads.keys() == grads.keys() and None not in grads.values()
    largest = max(g.abs().max() for g in ref_grads.values())
    for name, expected in [('output', ref_out), *ref_grads.items()]:
        actual = out if name == 'output' else grads[name]
        err = (actual - expected).abs().max()
        if dtype == torch.float64:
            assert err <= F64_ATOL, f'{name}: {err:.2e}'
        else:
            # The key bias's gradient is zero in exact math (softmax ignores a constant per
            # query): rounding noise, measured against the largest gradient.
            scale = largest if name == 'k.bias' else expected.abs().max()
            assert err <= F32_RTOL * scale, f'{name}: {err / scale:.2e} relative'


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
@pytest.mark.parametrize('cls,stride', [(DeformableAttention, 1),
                                        (DeformableAttentionPlusPlus, 2)])
@pytest.mark.parametrize('size,push', [((11, 7), 1.0), ((8, 8), 30.0)])
def test_layer_equals_reference(cls, stride, size, push, dtype):
    """A (6, 9) table on another map size; ``push`` scales the offset network's output so
    that taps leave the map and the table."""
    torch.manual_seed(0)
    layer = cls(64, 4, 2, (6, 9), offset_kernel_size=5, offset_stride=stride).to(dtype).train()
    with torch.no_grad():
        layer.rpe_table.normal_()
        layer.offset.proj.weight.mul_(push)
    compare(layer, torch.randn(2, *size, 64, dtype=dtype), dtype)


def test_layer_with_bias_blocks_equals_reference():
    """The checkpointed row blocks of the 'sdpa' kernel, in float64."""
    torch.manual_seed(0)
    layer = DeformableAttention(64, 4, 2, (8, 8), offset_kernel_size=5).double().train()
    layer.bias_block_threshold, layer.bias_block_elements = 1000, 30000
    # rows of 2 images x 4 heads x 13 columns x 130 keys = 13520 elements: 2 rows a block
    assert layer.bias_rows(2, 10, 13, 130, training=True) == 2
    with torch.no_grad():
        layer.rpe_table.normal_()
    compare(layer, torch.randn(2, 10, 13, 64, dtype=torch.float64), torch.float64)


@pytest.mark.parametrize('family', ['dat', 'datpp'])
def test_backbones_equal_reference_in_float64(family):
    """Whole DAT and DAT++ in train mode at a size that is no multiple of 32."""
    torch.manual_seed(0)
    if family == 'dat':
        model = DAT(DAT_ARCH_2X, img_size=64, window_size=[4, 4, 4, 2], out_indices=(2, 3))
    else:
        model = DATPlusPlus(dict(DATPP_ARCH, depths=[2, 2, 2, 2],
                                 block_types=['ND', 'DN', 'ND', 'DD']),
                            img_size=64, out_indices=(2, 3))
    model = model.double().train()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith('rpe_table'):
                param.normal_()
    x = torch.randn(2, 3, 72, 93, dtype=torch.float64)

    def run(impl):
        model.zero_grad(set_to_none=True)
        set_attention_impl(model, impl)
        outs = model(x)
        sum(o.square().sum() for o in outs).backward()
        return outs, {n: p.grad for n, p in model.named_parameters()}
    ref_outs, ref_grads = run('reference')
    outs, grads = run('sdpa')
    for a, b in zip(outs, ref_outs):
        assert_f64(a, b, 'output')
    for name, grad in ref_grads.items():
        assert_f64(grads[name], grad, name)
