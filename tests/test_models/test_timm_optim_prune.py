"""The timm model beside timm's tools: its optimizer factory gives the no-decay groups of
our configs, and the model keeps working after ``prune_intermediate_layers``."""
import pytest
import timm
import timm.optim
import torch
from mmengine.optim import OptimWrapper

import dat  # noqa: F401  (registers the timm models)
from dat.engine.optim import NoDecayKeywordsConstructor

#: The paramwise rules of the release recipes (configs/_base_/schedules/*adamw_dat*.py).
PARAMWISE = dict(norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0)


def no_decay_names(model, optimizer) -> set:
    names = {id(p): name for name, p in model.named_parameters()}
    return {names[id(p)] for group in optimizer.param_groups if group['weight_decay'] == 0
            for p in group['params']}


@pytest.mark.parametrize('name, tables', [('dat_tiny', 12), ('datpp_tiny', 14)])
def test_timm_optimizer_has_our_no_decay_set(name, tables):
    """timm.optim.create_optimizer_v2(model, 'adamw', weight_decay=0.05) leaves out of
    weight decay exactly what NoDecayKeywordsConstructor does with the release recipe: the
    1-d parameters (norms, biases) and the position tables that the backbone names."""
    with torch.device('meta'):
        model = timm.create_model(name)
    ours = NoDecayKeywordsConstructor(
        dict(type=OptimWrapper, optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05)),
        paramwise_cfg=PARAMWISE)(model).optimizer
    timms = timm.optim.create_optimizer_v2(model, 'adamw', weight_decay=0.05)
    ours_names, timm_names = no_decay_names(model, ours), no_decay_names(model, timms)
    assert ours_names == timm_names
    position = {n for n in timm_names if n.endswith(('relative_position_bias_table',
                                                     'rpe_table'))}
    assert len(position) == tables  # DAT-T: 8 window, 4 deformable; DAT-T++: 14 deformable
    decayed = {n for n, _ in model.named_parameters()} - timm_names
    assert 'backbone.stages.2.blocks.1.attn.q.weight' in decayed
    if name == 'datpp_tiny':  # the N blocks' rpb is decayed, as the release does
        assert 'backbone.stages.0.blocks.0.attn.rpb' in decayed


def test_pruned_model_runs_its_last_kept_stage():
    """After prune_intermediate_layers([0, 1]) the model holds stages 0-1 only (no final
    norm, no head), and forward gives stage 1's map, equal to the unpruned model's."""
    torch.manual_seed(0)
    full = timm.create_model('dat_tiny').eval()
    pruned = timm.create_model('dat_tiny').eval()
    pruned.load_state_dict(full.state_dict())
    assert pruned.prune_intermediate_layers([0, 1]) == [0, 1]
    assert len(pruned.backbone.stages) == 2 and not hasattr(pruned.backbone, 'norm3')
    assert not any(k.startswith(('backbone.stages.2', 'backbone.norm3', 'head.fc'))
                   for k in pruned.state_dict())
    x = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        expected = full.forward_intermediates(x, indices=[1], intermediates_only=True)[0]
        out = pruned(x)
        features = pruned.forward_features(x)
        final, inter = pruned.forward_intermediates(x)
    assert out.shape == (2, 192, 12, 16)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    torch.testing.assert_close(features, expected, rtol=0, atol=0)
    torch.testing.assert_close(final, expected, rtol=0, atol=0)
    assert [tuple(t.shape) for t in inter] == [(2, 96, 24, 32), (2, 192, 12, 16)]


def test_pruned_keeps_the_final_norm_of_the_last_stage():
    """Pruning nothing but the head keeps norm3: forward_features is the unpruned one."""
    model = timm.create_model('datpp_tiny').eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = model.forward_features(x)
        model.prune_intermediate_layers(4)
        after = model(x)
    assert hasattr(model.backbone, 'norm3') and model.num_classes == 0
    torch.testing.assert_close(after, before, rtol=0, atol=0)
