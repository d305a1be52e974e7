"""torch.compile of DAT-T and DAT-T++: forward and backward each one graph (no graph breaks),
with the eager numbers; the deformable blocks' checkpointed bias blocks included."""
import pytest
import torch
from functorch.compile import make_boxed_func
from torch._dynamo.backends.common import aot_autograd

from dat.models import DAT, DATPlusPlus
from dat.models.layers import DeformableAttention


def counting_backend(graphs):
    """aot_eager that records each forward ('fw') and backward ('bw') graph it is given."""
    def compiler(kind):
        def compile_graph(gm, example_inputs):
            graphs.append(kind)
            return make_boxed_func(gm.forward)
        return compile_graph
    return aot_autograd(fw_compiler=compiler('fw'), bw_compiler=compiler('bw'))


@pytest.mark.slow
@pytest.mark.parametrize('cls', [DAT, DATPlusPlus])
def test_tiny_forward_and_backward_one_graph_each(fresh_dynamo, cls):
    """fullgraph=True fails on any graph break in the forward; AOTAutograd then traces the
    whole backward as one graph. The bias threshold is lowered so that every D block runs
    its bias in checkpointed blocks under compile too."""
    torch.manual_seed(0)
    model = cls('tiny', img_size=224, drop_path_rate=0.0, attn_impl='sdpa').train()
    for module in model.modules():
        if isinstance(module, DeformableAttention):
            module.bias_block_threshold, module.bias_block_elements = 1000, 700
    x = torch.randn(1, 3, 64, 64)
    weights = [torch.randn_like(o) for o in model(x)]

    def step(module):
        model.zero_grad(set_to_none=True)
        loss = sum((o * w).sum() for o, w in zip(module(x), weights))
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()
                               if p.grad is not None}

    eager_loss, eager_grads = step(model)
    graphs = []
    compiled = torch.compile(model, fullgraph=True, backend=counting_backend(graphs))
    loss, grads = step(compiled)
    assert graphs == ['fw', 'bw']
    assert torch.allclose(loss, eager_loss, rtol=1e-5)
    assert grads.keys() == eager_grads.keys() and len(grads) > 100
    largest = max(g.abs().max() for g in eager_grads.values())
    worst = max(((grads[n] - g).abs().max() / largest).item() for n, g in eager_grads.items())
    assert worst < 1e-5, worst


@pytest.mark.slow
@pytest.mark.parametrize('family', ['dat', 'datpp'])
def test_compiled_once_for_repeated_calls(fresh_dynamo, family):
    """A fresh model compiled before any eager call compiles one graph for three training
    calls: nothing that the compiled code guards on (the layers' resolved kernels, einops'
    backend cache) changes during the first call."""
    from mini_configs import DAT_ARCH_2X, DATPP_ARCH
    from torch._dynamo.utils import counters
    torch.manual_seed(0)
    if family == 'dat':
        model = DAT(DAT_ARCH_2X, img_size=64, window_size=[4, 4, 4, 2], attn_impl='sdpa')
    else:
        model = DATPlusPlus(dict(DATPP_ARCH, depths=[2, 2, 2, 2],
                                 block_types=['ND', 'DN', 'ND', 'DD']), img_size=64)
    compiled = torch.compile(model.train(), backend='eager')
    before = counters['stats']['unique_graphs']
    for _ in range(3):
        sum(o.sum() for o in compiled(torch.randn(1, 3, 64, 64))).backward()
    assert counters['stats']['unique_graphs'] - before == 1


def test_optimizer_step_of_our_constructor_compiles(fresh_dynamo):
    """mmengine's compile=True compiles train_step, the optimizer's step included: the
    parameter groups of NoDecayKeywordsConstructor are plain dicts (mmengine's ConfigDicts
    stopped dynamo in AdamW.step), and the compiled step runs."""
    from mini_configs import DAT_ARCH
    from mmengine.config import ConfigDict

    from dat.engine.optim import NoDecayKeywordsConstructor
    torch.manual_seed(0)
    model = DAT(DAT_ARCH, img_size=32, window_size=[4, 4, 2, 1])
    constructor = NoDecayKeywordsConstructor(ConfigDict(
        type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05)),
        ConfigDict(norm_decay_mult=0.0))
    wrapper = constructor(model)
    groups = wrapper.optimizer.param_groups
    assert len(groups) > 1 and {type(group) for group in groups} == {dict}
    assert {group['weight_decay'] for group in groups} == {0.0, 0.05}
    sum(o.sum() for o in model(torch.randn(1, 3, 32, 32))).backward()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    torch.compile(wrapper.optimizer.step, backend='eager')()
    assert all(not torch.equal(p, before[n]) for n, p in model.named_parameters()
               if p.grad is not None and p.grad.abs().max() > 0)
