"""attn_impl: what each layer runs, chosen from its checks once per layer and condition, set
per model, and reported as it runs."""
import pytest
import torch
import torch.nn.functional as F
from mini_configs import DAT_ARCH_2X, DATPP_ARCH

from dat.models import DAT, DATPlusPlus
from dat.models.layers import (DeformableAttention, DeformableAttentionPlusPlus,
                               NeighborhoodAttention, WindowAttention, attention_kernels,
                               attention_layers, fast_attention, set_attention_impl)
from dat.models.layers.common import summarize_kernels

CPU, CUDA = torch.device('cpu'), torch.device('cuda')


def layers():
    return dict(window=WindowAttention(32, 2, 4),
                deformable=DeformableAttention(32, 2, 1, (8, 8), offset_kernel_size=3),
                deformable_pp=DeformableAttentionPlusPlus(32, 2, 1, (8, 8), 3, 2),
                neighborhood=NeighborhoodAttention(32, 2))


@pytest.mark.parametrize('impl,expected', [
    # window, deformable, deformable_pp, neighborhood; on the CPU, then on CUDA
    ('auto', [('reference', 'sdpa'), ('reference', 'sdpa'), ('reference', 'sdpa'),
              ('sdpa', 'sdpa')]),
    ('reference', [('reference', 'reference')] * 4),
    ('sdpa', [('sdpa', 'sdpa')] * 4),
])
def test_each_layer_declares_its_kernels(impl, expected):
    got = []
    for layer in layers().values():
        set_attention_impl(layer, impl)
        assert layer.kernels == ('reference', 'sdpa')
        got.append((layer.kernel(CPU), layer.kernel(CUDA)))
    assert got == expected


def test_resolved_once_per_layer_and_condition():
    layer = WindowAttention(32, 2, 4)
    assert layer.kernel(CPU) == 'reference'
    layer.auto_order = {'cpu': ('sdpa', ), 'cuda': ('reference', )}  # read on first use only
    assert layer.kernel(CPU) == 'reference'
    assert layer.kernel('cuda:1') == 'reference'  # a device type not seen yet
    set_attention_impl(layer, 'auto')  # setting again resolves again
    assert layer.kernel(CPU) == 'sdpa'


def test_the_choice_is_made_from_the_checks():
    """'auto' takes the first kernel whose check passes; a named kernel that cannot run is
    an error with the check's reason."""
    class NoHalfSdpa(WindowAttention):
        def can_run_sdpa(self, device_type, dtype, grad):
            if dtype == torch.float16:
                return 'no float16 here'
            return super().can_run_sdpa(device_type, dtype, grad)

    layer = NoHalfSdpa(32, 2, 4)
    assert layer.kernel(CUDA, torch.float32) == 'sdpa'
    assert layer.kernel(CUDA, torch.float16) == 'reference'
    assert layer.kernel(CUDA, torch.int64) == 'reference'  # the base check: floating only
    set_attention_impl(layer, 'sdpa')
    with pytest.raises(RuntimeError, match=r"NoHalfSdpa cannot run attn_impl='sdpa' here: "
                       r'no float16 here'):
        layer.kernel(CUDA, torch.float16)


def test_unknown_or_impossible_requests_are_refused():
    message = (r"Unknown attention implementation attn_impl='flex'; choose one of 'auto', "
               r"'reference', 'sdpa'$")
    with pytest.raises(ValueError, match=message):
        DAT(DAT_ARCH_2X, img_size=64, attn_impl='flex')
    with pytest.raises(ValueError, match=message):
        set_attention_impl(WindowAttention(32, 2, 4), 'flex')

    class SdpaOnly(WindowAttention):
        kernels = ('sdpa', )

    with pytest.raises(ValueError, match=r"SdpaOnly cannot run attn_impl='reference'; it runs "
                       r"'auto', 'sdpa'"):
        SdpaOnly(32, 2, 4, attn_impl='reference')
    model = torch.nn.Sequential(WindowAttention(32, 2, 4), SdpaOnly(32, 2, 4))
    with pytest.raises(ValueError, match=r"^1 \(SdpaOnly\) cannot run attn_impl='reference'"):
        set_attention_impl(model, 'reference')
    assert [layer.attn_impl for layer in model] == ['auto', 'auto']  # nothing changed


def kernels_that_ran(model, x, training):
    """Run ``model`` (a training step or an inference forward) and return, by layer name, the
    kernel each attention layer actually ran: 'sdpa' where it called
    F.scaled_dot_product_attention or fast_attention.attention (which runs the same math
    without SDPA on the CPU when the mask needs a gradient), else 'reference'."""
    ran, current = {}, []
    sdpa, attention = F.scaled_dot_product_attention, fast_attention.attention

    def counting(function):
        def counted(*args, **kwargs):
            if current:  # else a checkpointed region, run again in the backward
                ran[current[-1]] = 'sdpa'
            return function(*args, **kwargs)
        return counted
    handles = []
    for name, layer in attention_layers(model).items():
        ran[name] = 'reference'
        handles.append(layer.register_forward_pre_hook(
            lambda module, args, name=name: current.append(name)))
        handles.append(layer.register_forward_hook(lambda *args: current.pop() and None))
    F.scaled_dot_product_attention = counting(sdpa)
    fast_attention.attention = counting(attention)
    try:
        model.train(training)
        with torch.set_grad_enabled(training):
            outs = model(x)
            if training:
                sum(o.sum() for o in outs).backward()
    finally:
        F.scaled_dot_product_attention, fast_attention.attention = sdpa, attention
        for handle in handles:
            handle.remove()
    return ran


@pytest.mark.parametrize('impl', ['auto', 'reference', 'sdpa'])
@pytest.mark.parametrize('training', [False, True])
def test_report_is_what_runs(impl, training):
    """attention_kernels reports, for each layer, the kernel that its forward runs."""
    torch.manual_seed(0)
    for model in (DAT(DAT_ARCH_2X, img_size=64, window_size=[4, 4, 4, 2], attn_impl=impl),
                  DATPlusPlus(dict(DATPP_ARCH, depths=[2, 2, 2, 2],
                                   block_types=['ND', 'DN', 'ND', 'DD']), img_size=64,
                              attn_impl=impl)):
        report = attention_kernels(model, CPU, training=training)
        assert kernels_that_ran(model, torch.randn(1, 3, 72, 93), training) == report
        if impl != 'auto':
            assert set(report.values()) == {impl}


def test_attention_kernels_reports_every_block():
    model = DATPlusPlus(dict(DATPP_ARCH, depths=[2, 2, 2, 2],
                             block_types=['ND', 'DN', 'ND', 'DD']), img_size=64)
    kernels = attention_kernels(model)  # the model's device: the CPU
    assert kernels == {f'stages.{i}.blocks.{j}.attn': 'sdpa' if kind == 'N' else 'reference'
                       for i, kinds in enumerate(['ND', 'DN', 'ND', 'DD'])
                       for j, kind in enumerate(kinds)}
    assert set(attention_kernels(model, 'cuda').values()) == {'sdpa'}
    previous = set_attention_impl(model, 'reference')
    assert set(previous.values()) == {'auto'} and model.attn_impl == 'reference'
    assert set(attention_kernels(model).values()) == {'reference'}


def test_log_line_summarises_the_kernels():
    """The backbone's first forward logs this line (in a run's log file)."""
    model = DATPlusPlus(dict(DATPP_ARCH, depths=[2, 2, 2, 2],
                             block_types=['ND', 'DN', 'ND', 'DD']), img_size=64)
    assert summarize_kernels(attention_kernels(model), attention_layers(model)) == (
        "'sdpa' (3 NeighborhoodAttention), 'reference' (5 DeformableAttentionPlusPlus)")
    set_attention_impl(model, 'sdpa')
    assert summarize_kernels(attention_kernels(model), attention_layers(model)) == "'sdpa'"
