import logging

import pytest
import torch
from mini_configs import DAT_ARCH_2X as MINI
from mmengine.logging import MMLogger

from dat.models import DAT
from dat.models.layers import DeformableAttention, WindowAttention

# A scaled-down DAT with every block kind (MINI); windows 4/4/4/2 so odd sizes need padding.


def mini(**kwargs):
    kwargs.setdefault('img_size', 64)
    kwargs.setdefault('window_size', [4, 4, 4, 2])
    return DAT(MINI, **kwargs)


def test_arch():
    with pytest.raises(ValueError, match=r"Unknown arch 'huge' for DAT; choose one of "
                       r"\['base', 'small', 'tiny'\]"):
        DAT('huge')
    with pytest.raises(ValueError, match=r"missing \['groups'\]"):
        DAT({k: v for k, v in MINI.items() if k != 'groups'})
    with pytest.raises(ValueError, match=r"block_types\[2\]='LX'"):
        DAT(dict(MINI, block_types=['LS', 'LS', 'LX', 'LD']))
    with pytest.raises(ValueError, match='stage 3 has D blocks but groups=-1'):
        DAT(dict(MINI, groups=[-1, -1, 2, -1]))
    with pytest.raises(ValueError, match='window_size needs one value or 4'):
        DAT('tiny', window_size=[7, 7])

    model = mini()

    def kind(attn):
        if isinstance(attn, DeformableAttention):
            return 'D'
        assert isinstance(attn, WindowAttention)
        return 'S' if attn.shift_size else 'L'

    kinds = [''.join(kind(b.attn) for b in stage.blocks) for stage in model.stages]
    assert kinds == MINI['block_types']


@pytest.mark.parametrize('arch,kwargs,params', [
    ('tiny', {}, 28_319_138),
    ('small', {}, 49_700_402),
    ('base', {}, 87_881_632),
    ('base', dict(img_size=384, window_size=12), 88_178_272),
])
def test_parameter_count_matches_2022(arch, kwargs, params):
    with torch.device('meta'):
        model = DAT(arch, **kwargs)
    head = model.num_features[-1] * 1000 + 1000  # the 1000-class linear head
    assert sum(p.numel() for p in model.parameters()) + head == params


def test_structure():
    model = DAT('tiny', drop_path_rate=0.2, out_indices=(0, 1, 2, 3))
    rates = [b.drop_path.drop_prob if hasattr(b.drop_path, 'drop_prob') else 0.0
             for stage in model.stages for b in stage.blocks]
    assert len(rates) == 12
    assert rates[0] == 0 and rates[-1] == pytest.approx(0.2)
    assert all(b > a for a, b in zip(rates[1:], rates[2:]))  # linear, rising
    assert [s.downsample is None for s in model.stages] == [True, False, False, False]
    shifts = [b.attn.shift_size for b in model.stages[0].blocks]
    assert shifts == [0, 4]  # ceil(7 / 2), as in the 2022 release
    d_blocks = [b.attn for s in model.stages for b in s.blocks if b.deformable]
    assert [a.offset.dwconv.kernel_size[0] for a in d_blocks] == [5, 5, 5, 3]
    assert tuple(d_blocks[0].rpe_table.shape) == (12, 27, 27)
    assert tuple(d_blocks[-1].rpe_table.shape) == (24, 13, 13)
    assert all(hasattr(model, f'norm{i}') for i in range(4))
    assert model.no_weight_decay_keywords() == ('relative_position_bias_table', 'rpe_table')


def test_forward_shapes_at_any_size():
    model = mini(out_indices=(0, 1, 2, 3)).eval()
    cases = {(64, 64): [(16, 16), (8, 8), (4, 4), (2, 2)],
             (80, 100): [(20, 25), (10, 12), (5, 6), (2, 3)],
             (112, 137): [(28, 34), (14, 17), (7, 8), (3, 4)]}
    with torch.no_grad():
        for (h, w), sizes in cases.items():
            outs = model(torch.rand(2, 3, h, w))
            assert [tuple(o.shape[2:]) for o in outs] == sizes
            assert [o.shape[1] for o in outs] == MINI['embed_dims']
            assert all(torch.isfinite(o).all() for o in outs)


def test_tiny_takes_other_sizes():
    model = DAT('tiny').eval()
    with torch.no_grad():
        assert tuple(model(torch.rand(1, 3, 224, 224))[0].shape) == (1, 768, 7, 7)
        assert tuple(model(torch.rand(1, 3, 256, 320))[0].shape) == (1, 768, 8, 10)
        assert tuple(model(torch.rand(1, 3, 112, 137))[0].shape) == (1, 768, 3, 4)


def test_too_small_input_is_refused():
    model = mini()
    with pytest.raises(ValueError, match=r'input of size \(31, 64\) is too small for DAT'):
        model(torch.rand(1, 3, 31, 64))
    with pytest.raises(ValueError, match=r'expects a \(B, C, H, W\) batch'):
        model(torch.rand(3, 64, 64))


def test_window_padding_is_masked():
    """Real tokens never attend to padding: their output equals the output for the same
    tokens on a map whose padding holds other values."""
    torch.manual_seed(0)
    attn = WindowAttention(8, 2, 4, shift=True).eval()
    x = torch.rand(1, 6, 7, 8)
    out = attn(x)
    # Compute by hand on an explicitly padded map with garbage in the padding:
    # the padded-key mask must make the garbage irrelevant.
    garbage = torch.full((1, 8, 8, 8), 5.0)
    garbage[:, :6, :7] = x
    full = WindowAttention(8, 2, 4, shift=True).eval()
    full.load_state_dict(attn.state_dict())
    mask = attn.attention_mask(6, 7, x.device)
    full.attention_mask = lambda height, width, device: mask
    assert torch.allclose(full(garbage)[:, :6, :7], out, atol=1e-5)


def test_deformable_info():
    model = mini().eval()
    x = torch.rand(2, 3, 64, 80)
    with torch.no_grad():
        outs, info = model.forward_with_deform_info(x)
        plain = model(x)
    assert torch.equal(outs[0], plain[0])
    assert sorted(info) == ['stage2.block1', 'stage3.block1']
    pos = info['stage2.block1']['positions']
    assert tuple(pos.shape) == (2, 2, 4, 5, 2)
    assert tuple(info['stage2.block1']['references'].shape) == (2, 2, 4, 5, 2)
    attn = info['stage2.block1']['attn_weights']
    assert tuple(attn.shape) == (2, 4, 20, 20)
    assert torch.allclose(attn.sum(-1), torch.ones(2, 4, 20))
    # offsets are bounded by offset_range_factor / size
    delta = (pos - info['stage2.block1']['references']).abs()
    assert (delta[..., 0] <= 2 / 4 + 1e-6).all() and (delta[..., 1] <= 2 / 5 + 1e-6).all()


def test_deformable_info_keeps_gradient_checkpointing(monkeypatch):
    """The info comes from hooks, so the forward that records it is the training forward:
    with ``with_cp`` every block still runs under checkpointing, the outputs are those of
    forward(), and the hooks are gone afterwards."""
    import dat.models.backbones.dat as dat_module
    model = mini(with_cp=True).train()
    calls = []
    checkpoint = dat_module.cp.checkpoint
    monkeypatch.setattr(dat_module.cp, 'checkpoint',
                        lambda *args, **kwargs: calls.append(1) or checkpoint(*args, **kwargs))
    x = torch.rand(1, 3, 64, 64, requires_grad=True)
    torch.manual_seed(0)
    outs, info = model.forward_with_deform_info(x)
    assert len(calls) == sum(MINI['depths'])
    assert sorted(info) == ['stage2.block1', 'stage3.block1']
    assert info['stage2.block1']['feature_size'] == (4, 4)
    outs[0].sum().backward()
    assert x.grad is not None
    attns = [m for m in model.modules() if isinstance(m, DeformableAttention)]
    assert not any(attn._forward_hooks for attn in attns)
    torch.manual_seed(0)
    torch.testing.assert_close(model(x)[0], outs[0])


def test_layers_are_timms():
    """Mlp, LayerNorm2d (with nn.LayerNorm's eps, as the release) and the window's relative
    position index are timm's, with the parameter names and numbers of before."""
    from timm.layers import LayerNorm2d, Mlp
    model = mini()
    block = model.stages[2].blocks[1]
    assert type(block.mlp) is Mlp and [n for n, _ in block.mlp.named_parameters()] == [
        'fc1.weight', 'fc1.bias', 'fc2.weight', 'fc2.bias']
    norm = block.attn.offset.norm
    assert type(norm) is LayerNorm2d and norm.eps == 1e-5
    # Swin's index: (dy + w - 1) * (2w - 1) + (dx + w - 1) for tokens (y, x) in a w x w window
    w = 4
    index = model.stages[0].blocks[0].attn.relative_position_index
    ys, xs = torch.arange(w * w) // w, torch.arange(w * w) % w
    expected = (ys[:, None] - ys[None] + w - 1) * (2 * w - 1) + xs[:, None] - xs[None] + w - 1
    assert torch.equal(index, expected)


SLOW = pytest.mark.slow  # (> ~20 s on 2 cores)


@pytest.mark.parametrize('arch,kwargs,size', [
    ('tiny', {}, 224), pytest.param('small', {}, 224, marks=SLOW),
    pytest.param('base', {}, 224, marks=SLOW),
    pytest.param('base', dict(img_size=384, window_size=12), 384, marks=SLOW),
    ('tiny', {}, (160, 200)), ('tiny', {}, (97, 130)),
    ('base', dict(img_size=384, window_size=12), (200, 264)),
])
def test_forward_backward_reaches_offsets_and_tables(arch, kwargs, size):
    torch.manual_seed(0)
    model = DAT(arch, drop_path_rate=0.1, **kwargs).train()
    h, w = (size, size) if isinstance(size, int) else size
    out = model(torch.rand(1, 3, h, w))[-1]
    out.square().mean().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
    # drop-path may drop a whole block for this one image, so look at all D blocks
    d_blocks = [b.attn for s in model.stages for b in s.blocks if b.deformable]
    for name in ('offset.dwconv.weight', 'offset.proj.weight', 'rpe_table'):
        grads = [a.get_parameter(name).grad.abs().sum() for a in d_blocks]
        assert sum(g > 0 for g in grads) >= len(d_blocks) - 1, (name, grads)
    assert model.stages[0].blocks[0].attn.relative_position_bias_table.grad.abs().sum() > 0


def test_frozen_stages():
    model = mini(frozen_stages=2, out_indices=(0, 1, 2, 3))
    model.train()
    frozen = [model.patch_embed, model.stages[0], model.stages[1], model.norm0, model.norm1]
    for module in frozen:
        assert not module.training
        assert all(not p.requires_grad for p in module.parameters())
    for module in [model.stages[2], model.stages[3], model.norm2, model.norm3]:
        assert module.training
        assert all(p.requires_grad for p in module.parameters())


def test_with_cp_gives_same_numbers():
    torch.manual_seed(0)
    plain = mini().train()
    checkpointed = mini(with_cp=True).train()
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.rand(2, 3, 64, 64)
    grads = []
    for model in (plain, checkpointed):
        out = model(x)[-1]
        out.sum().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(*grads))


def test_init_weights_pretrained_resizes_tables(tmp_path):
    """A checkpoint made at 64 px / window 4 loads into a model for 96 px / window 6;
    the position tables are resized and the resize is logged."""
    source = mini()
    path = tmp_path / 'mini.pth'
    torch.save(dict(state_dict={f'backbone.{k}': v for k, v in source.state_dict().items()}),
               path)
    target = mini(img_size=96, window_size=[6, 6, 6, 3], init_cfg=dict(
        type='Pretrained', checkpoint=str(path), prefix='backbone.'))
    logger = MMLogger.get_instance('test_dat_resize', log_level='INFO')
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        target.init_weights()
    finally:
        logger.removeHandler(handler)
    messages = [r.getMessage() for r in records]
    assert any('resized stages.2.blocks.1.attn.rpe_table from (4, 7, 7) to (4, 11, 11)' in m
               for m in messages), messages
    assert any('stages.0.blocks.0.attn.relative_position_bias_table from (49, 1) to (121, 1)'
               in m for m in messages), messages
    src_table = source.stages[2].blocks[1].attn.rpe_table
    dst_table = target.stages[2].blocks[1].attn.rpe_table
    # the corners of an aligned-corner resize keep their values
    assert torch.allclose(dst_table[:, 0, 0], src_table[:, 0, 0])
    assert torch.allclose(dst_table[:, -1, -1], src_table[:, -1, -1])
    assert torch.equal(target.patch_embed.proj.weight, source.patch_embed.proj.weight)
    with torch.no_grad():
        assert torch.isfinite(target.eval()(torch.rand(1, 3, 96, 96))[0]).all()
