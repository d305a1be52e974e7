import pytest
import torch
from mini_configs import DATPP_ARCH

from dat.models import DAT, DATPlusPlus
from dat.models.layers import (DeformableAttentionPlusPlus, NeighborhoodAttention,
                               attention_kernels, set_attention_impl)

# A scaled-down DAT++ with both block kinds in every stage but the last (as released).
MINI = dict(DATPP_ARCH, depths=[2, 2, 2, 2], block_types=['ND', 'DN', 'ND', 'DD'])


def mini(**kwargs):
    kwargs.setdefault('img_size', 64)
    return DATPlusPlus(MINI, **kwargs)


def test_arch():
    with pytest.raises(ValueError, match=r"Unknown arch 'huge' for DATPlusPlus; choose one "
                       r"of \['base', 'small', 'tiny'\]"):
        DATPlusPlus('huge')
    with pytest.raises(ValueError, match=r"block_types\[2\]='NL' must have 2 letters from "
                       r"'N', 'D'"):
        DATPlusPlus(dict(MINI, block_types=['ND', 'ND', 'NL', 'DD']))
    with pytest.raises(ValueError, match='stage 3 has D blocks but groups=-1'):
        DATPlusPlus(dict(MINI, groups=[1, 1, 2, -1]))
    with pytest.raises(ValueError, match=r"missing \['num_heads'\]"):
        DATPlusPlus({k: v for k, v in MINI.items() if k != 'num_heads'})

    model = mini()
    kinds = [''.join('D' if isinstance(b.attn, DeformableAttentionPlusPlus) else 'N'
                     for b in stage.blocks) for stage in model.stages]
    assert kinds == MINI['block_types']
    assert all(isinstance(b.attn, NeighborhoodAttention) for s in model.stages
               for b in s.blocks if not b.deformable)
    assert isinstance(model, DAT)  # shares DAT's loading, freezing and forward


@pytest.mark.parametrize('arch,params', [
    ('tiny', 23_962_876), ('small', 53_127_366), ('base', 93_690_640)])
def test_parameter_count_matches_release(arch, params):
    with torch.device('meta'):
        model = DATPlusPlus(arch)
    head = model.num_features[-1] * 1000 + 1000  # the 1000-class linear head
    assert sum(p.numel() for p in model.parameters()) + head == params


def test_structure():
    model = DATPlusPlus('tiny', drop_path_rate=0.2, out_indices=(0, 1, 2, 3))
    rates = [b.drop_path.drop_prob if hasattr(b.drop_path, 'drop_prob') else 0.0
             for stage in model.stages for b in stage.blocks]
    assert len(rates) == 26 and rates[0] == 0 and rates[-1] == pytest.approx(0.2)
    kinds = [''.join('D' if b.deformable else 'N' for b in s.blocks) for s in model.stages]
    assert kinds == ['ND', 'NDND', 'ND' * 9, 'DD']
    d_blocks = [next(b.attn for b in s.blocks if b.deformable) for s in model.stages]
    assert [a.offset.dwconv.kernel_size[0] for a in d_blocks] == [9, 7, 5, 3]
    assert [a.offset.dwconv.stride[0] for a in d_blocks] == [8, 4, 2, 1]
    assert [a.offset.dwconv.padding[0] for a in d_blocks] == [4, 3, 2, 1]
    assert [tuple(a.rpe_table.shape) for a in d_blocks] == [
        (2, 111, 111), (4, 55, 55), (8, 27, 27), (16, 13, 13)]
    assert [a.groups for a in d_blocks] == [1, 2, 4, 8]
    assert tuple(model.stages[0].blocks[0].attn.rpb.shape) == (2, 13, 13)
    stem = model.patch_embed
    assert (stem.proj1.stride, stem.proj1.out_channels, stem.proj2.stride) == ((2, 2), 32, (2, 2))
    down = model.stages[1].downsample.proj
    assert (down.kernel_size, down.stride, down.bias) == ((3, 3), (2, 2), None)
    block = model.stages[0].blocks[0]
    assert block.lpu.groups == 64 and block.mlp.dwconv.groups == 256
    assert model.no_weight_decay_keywords() == ('relative_position_bias_table', 'rpe_table')


def test_forward_shapes_at_any_size():
    model = mini(out_indices=(0, 1, 2, 3)).eval()
    # the strided convs round up: a side of n becomes ceil(n / 2)
    cases = {(64, 64): [(16, 16), (8, 8), (4, 4), (2, 2)],
             (112, 137): [(28, 35), (14, 18), (7, 9), (4, 5)],
             (33, 47): [(9, 12), (5, 6), (3, 3), (2, 2)]}
    with torch.no_grad():
        for (h, w), sizes in cases.items():
            outs = model(torch.rand(2, 3, h, w))
            assert [tuple(o.shape[2:]) for o in outs] == sizes
            assert [o.shape[1] for o in outs] == MINI['embed_dims']
            assert all(torch.isfinite(o).all() for o in outs)


def test_too_small_input_is_refused():
    model = mini()
    with pytest.raises(ValueError, match=r'input of size \(32, 64\) is too small for DAT\+\+'):
        model(torch.rand(1, 3, 32, 64))
    with pytest.raises(ValueError, match=r'expects a \(B, C, H, W\) batch'):
        model(torch.rand(3, 64, 64))


def test_deformable_info():
    model = mini().eval()
    x = torch.rand(2, 3, 64, 80)
    with torch.no_grad():
        outs, info = model.forward_with_deform_info(x)
        plain = model(x)
    torch.testing.assert_close(outs[0], plain[0])
    assert sorted(info) == ['stage0.block1', 'stage1.block0', 'stage2.block1',
                            'stage3.block0', 'stage3.block1']
    # stage 0 is 16 x 20; keys every 8 pixels (padding 4): 2 x 3
    first = info['stage0.block1']
    assert tuple(first['positions'].shape) == (2, 1, 2, 3, 2)
    assert tuple(first['attn_weights'].shape) == (2, 1, 16 * 20, 6)
    torch.testing.assert_close(first['attn_weights'].sum(-1), torch.ones(2, 1, 320))
    # the reference grid is (i + 0.5) / (n - 1) * 2 - 1 and positions are clamped
    ref = first['references'][0, 0]
    torch.testing.assert_close(ref[:, 0, 0], torch.tensor([0.0, 2.0]))
    torch.testing.assert_close(ref[0, :, 1], torch.tensor([-0.5, 0.5, 1.5]))
    for block in info.values():
        assert block['positions'].abs().max() <= 1


@pytest.mark.parametrize('how', ['setter', 'config'])
def test_fast_path_gives_same_numbers(how, monkeypatch):
    model = mini(attn_impl='reference').eval()
    x = torch.rand(1, 3, 72, 90)
    with torch.no_grad():
        expected = model(x)[0]
    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(torch.nn.functional, 'scaled_dot_product_attention',
                        lambda *a, **k: calls.append(1) or sdpa(*a, **k))
    if how == 'config':
        fast = mini(attn_impl='sdpa').eval()
        fast.load_state_dict(model.state_dict())
    else:
        fast = model
        set_attention_impl(fast, 'sdpa')
    with torch.no_grad():
        got = fast(x)[0]
    assert set(attention_kernels(fast).values()) == {'sdpa'}
    # one call per block: N and D blocks alike
    n_blocks = sum(isinstance(m, (DeformableAttentionPlusPlus, NeighborhoodAttention))
                   for m in model.modules())
    assert len(calls) == n_blocks > 0
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('arch,size', [('tiny', 224), ('tiny', (97, 130)),
                                       pytest.param('small', 224, marks=pytest.mark.slow)])
def test_forward_backward_reaches_offsets_and_tables(arch, size):
    torch.manual_seed(0)
    model = DATPlusPlus(arch, drop_path_rate=0.1).train()
    h, w = (size, size) if isinstance(size, int) else size
    out = model(torch.rand(1, 3, h, w))[-1]
    out.square().mean().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
    d_blocks = [b.attn for s in model.stages for b in s.blocks if b.deformable]
    for name in ('offset.dwconv.weight', 'offset.proj.weight', 'rpe_table'):
        grads = [a.get_parameter(name).grad.abs().sum() for a in d_blocks]
        assert sum(g > 0 for g in grads) >= len(d_blocks) - 1, (name, grads)
    assert model.stages[0].blocks[0].attn.rpb.grad.abs().sum() > 0


def test_frozen_stages_and_with_cp():
    model = mini(frozen_stages=1, out_indices=(0, 1, 2, 3)).train()
    for module in [model.patch_embed, model.stages[0], model.norm0]:
        assert not module.training and not any(p.requires_grad for p in module.parameters())
    assert all(p.requires_grad for p in model.stages[1].parameters())

    torch.manual_seed(0)
    plain, checkpointed = mini().train(), mini(with_cp=True).train()
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.rand(2, 3, 64, 64)
    grads = []
    for model in (plain, checkpointed):
        model(x)[-1].sum().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(*grads))


def test_init_weights_pretrained(tmp_path):
    """A checkpoint loads strictly through init_cfg, with tables of another size resized;
    a checkpoint of another architecture is refused with the keys named."""
    source = mini(out_indices=(0, 1, 2, 3))
    path = tmp_path / 'mini.pth'
    torch.save(dict(state_dict={f'backbone.{k}': v for k, v in source.state_dict().items()}),
               path)
    target = mini(img_size=96, init_cfg=dict(type='Pretrained', checkpoint=str(path),
                                             prefix='backbone.'))
    target.init_weights()
    assert torch.equal(target.stages[1].blocks[1].attn.rpb, source.stages[1].blocks[1].attn.rpb)
    assert tuple(target.stages[0].blocks[1].attn.rpe_table.shape) == (1, 47, 47)
    torch.testing.assert_close(target.stages[0].blocks[1].attn.rpe_table[:, 0, 0],
                               source.stages[0].blocks[1].attn.rpe_table[:, 0, 0])

    other = DATPlusPlus(dict(MINI, embed_dims=[16, 32, 64, 128]), img_size=64,
                        init_cfg=dict(type='Pretrained', checkpoint=str(path),
                                      prefix='backbone.'))
    with pytest.raises(ValueError, match=r'DAT\+\+ backbone.*mis-shaped.*stages\.3\.'):
        other.init_weights()


def test_conv_mlp_recomputes_gelu_instead_of_keeping_it():
    """A training forward of the ConvMlp keeps no copy of GELU's output for fc2's backward
    (it applies GELU again there): the same outputs and gradients to the bit, one
    (B, H, W, 4C) tensor less kept; with_cp turns it off (checkpointing must see it all)."""
    from dat.models.backbones.datpp import ConvMlp

    torch.manual_seed(0)
    mlp = ConvMlp(8, 32)
    x = torch.randn(2, 5, 6, 8)

    def run(recompute):
        mlp.recompute_act = recompute
        mlp.zero_grad()
        inp = x.clone().requires_grad_()
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(
                lambda t: saved.append(t.numel()) or t, lambda t: t):
            out = mlp(inp)
        out.square().sum().backward()
        return out, [inp.grad] + [p.grad.clone() for p in mlp.parameters()], sum(saved)

    out, grads, kept = run(False)
    out_r, grads_r, kept_r = run(True)
    assert torch.equal(out, out_r)
    assert all(torch.equal(a, b) for a, b in zip(grads, grads_r))
    # fc2 saves its input (GELU's output) and its weight under our hooks, which an outer hook
    # does not see: the input is not kept (the weight, a parameter, is kept anyway)
    assert kept - kept_r == 2 * 5 * 6 * 32 + mlp.fc2.weight.numel()

    assert all(m.recompute_act for m in DATPlusPlus('tiny').modules() if isinstance(m, ConvMlp))
    assert not any(m.recompute_act for m in DATPlusPlus('tiny', with_cp=True).modules()
                   if isinstance(m, ConvMlp))
