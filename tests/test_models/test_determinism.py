"""Deterministic training: no op of a DAT or DAT++ training step with the 'sdpa' kernel is one
that ``torch.use_deterministic_algorithms(True)`` makes throw on CUDA (the profiler's op list
of a CPU step, against tools/analysis_tools/step_ops.py's table), and two seeded CPU runs
give bitwise-equal weights."""
import re

import pytest
import torch
import torch.nn.functional as F
from mini_configs import DAT_ARCH, DATPP_ARCH
from torch.profiler import ProfilerActivity, profile

from dat.models import DAT, DATPlusPlus


@pytest.fixture(scope='module')
def step_ops(load_tool):
    return load_tool('analysis_tools/step_ops.py')


def build(family: str, impl: str):
    if family == 'datpp':
        return DATPlusPlus(DATPP_ARCH, img_size=64, drop_path_rate=0.2, attn_impl=impl)
    return DAT(DAT_ARCH, img_size=64, window_size=[4, 4, 4, 2], drop_path_rate=0.2,
               attn_impl=impl)


def train_step(model, optimizer, x):
    loss = sum(o.float().pow(2).mean() for o in model(x))
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def test_table_follows_the_docstring(step_ops):
    """Every entry of the table is one of the docstring's throwing entries, and every
    throwing entry of the docstring is in the table."""
    doc = torch.use_deterministic_algorithms.__doc__
    throwing = doc[doc.index('operations will throw a'):doc.index('In addition, several')]
    entries = set(re.findall(r'\* :\w+:`([\w.]+)`', throwing))
    assert len(entries) > 15
    assert entries == set(step_ops.NONDETERMINISTIC_ON_CUDA)


@pytest.mark.parametrize('family', ['dat', 'datpp'])
def test_sdpa_training_step_has_no_throwing_op(step_ops, family):
    torch.manual_seed(0)
    x = torch.randn(1, 3, 64, 72)
    names = {}
    for impl in ('sdpa', 'reference'):
        model = build(family, impl).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            train_step(model, optimizer, x)
        names[impl] = {event.name for event in prof.events()}
    assert step_ops.nondeterministic_ops(names['sdpa']) == []
    # The control: the reference kernel differentiates grid_sample, which the table lists.
    assert 'aten::grid_sampler_2d_backward' in step_ops.nondeterministic_ops(names['reference'])


@pytest.mark.parametrize('family', ['dat', 'datpp'])
def test_two_seeded_runs_are_bitwise_equal(family):
    def run():
        torch.manual_seed(0)
        model = build(family, 'sdpa').train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        for _ in range(2):
            train_step(model, optimizer, torch.randn(1, 3, 64, 72))
        return model.state_dict()

    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        first, second = run(), run()
    finally:
        torch.use_deterministic_algorithms(previous)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[key], second[key]) for key in first)
    # The steps moved the weights (the comparison is not of two untrained models).
    torch.manual_seed(0)
    untouched = build(family, 'sdpa').state_dict()
    assert not all(torch.equal(untouched[key], first[key]) for key in first
                   if first[key].is_floating_point())


def test_soft_target_cross_entropy_has_no_nll_loss(step_ops):
    """The classification recipe's loss with mixup / cutmix targets (soft labels) runs no
    ``nll_loss``, which throws on CUDA in deterministic mode."""
    logits = torch.randn(4, 10, requires_grad=True)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        F.cross_entropy(logits, torch.rand(4, 10).softmax(-1)).backward()
    assert step_ops.nondeterministic_ops({e.name for e in prof.events()}) == []
