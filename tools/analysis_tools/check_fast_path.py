"""Check that the fast attention kinds (``sdpa``, ``flex``) give the reference numbers.

    # on a GPU: DAT-T backbone (all four outputs), 224 and a detection size, fp32 and bf16
    python tools/analysis_tools/check_fast_path.py
    python tools/analysis_tools/check_fast_path.py --compile   # also the compiled fast paths
    # a CPU smoke test
    python tools/analysis_tools/check_fast_path.py --device cpu --arch mini --sizes 64 72x93

On CUDA, every comparison runs with TF32 off (``torch.backends.cuda.matmul.allow_tf32`` and
``torch.backends.cudnn.allow_tf32`` False; the script says so and puts them back at the
end): cuDNN runs fp32 convolutions in TF32 by default, which alone puts the fp32 paths
~1e-3 apart (measured on an H200), and the bf16 cases compare with the fp32 reference.

For every size, dtype and kind in ``--impls``, the backbone runs forward and backward in
train mode (stochastic depth 0.2, the same seed for all paths, so all drop the same blocks)
with the reference and the fast attention, and the script prints, for each output map and
each parameter
gradient, the max abs difference and the relative difference (max abs difference / max abs
value of the reference). ``'flex'`` is for inference (with gradients its layers run SDPA
and warn, see :mod:`dat.models.layers.fast_attention`): its training case checks that it
gives the numbers, and a forward without gradients (eval mode) checks FlexAttention itself
against the reference's outputs. Gradients that vanish in exact math (the key bias: softmax ignores
a constant per query) or are zero in the reference hold only rounding noise; their
difference is divided by the largest gradient of the model instead.

- fp32 passes when every relative difference is at most ``--rtol`` (1e-4).
- bf16 (autocast) compares both paths against the fp32 reference: the fast path passes when
  its error is at most ``2 x`` the reference path's own autocast error + 1e-3, i.e. it is
  within the normal tolerance for autocast.

It also counts the deformable blocks that ran FlexAttention, and fails a ``flex`` inference
case on CUDA where none did or a layer switched to SDPA (the reason is printed), and a
``flex`` training case where any did. Exit code 1 if anything fails.

Before the backbone, the FlexAttention kernel alone is checked against the materialised bias
at ``--kernel-sizes`` key maps: by default 7x7, 16x17 and 50x76 on CUDA (below
``FLEX_MIN_KEYS`` too, to show whether small maps would be safe), none on the CPU, where
FlexAttention runs forward only (``--kernel-sizes 16x17`` compiles it there with inductor
and checks the forward). The output decides; the gradients (q, k, v, the table, the
positions) are printed for the record (``grad positions`` was 4.2e-2 off at 50x76 on an
H200, why ``'flex'`` does not train).
"""
import argparse
import contextlib
import os
import sys
import warnings
from collections import Counter
from typing import Dict, Tuple

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))

from dat.models import DAT  # noqa: E402
from dat.models.layers import DeformableAttention, fast_attention, set_attention_impl  # noqa: E402

#: A scaled-down DAT with every block kind, for quick CPU runs.
MINI = dict(embed_dims=[16, 32, 64, 64], depths=[2, 2, 2, 2], num_heads=[1, 2, 4, 4],
            groups=[-1, -1, 2, 2], block_types=['LS', 'LS', 'LD', 'SD'])


#: A reference tensor whose max abs value is below this counts as zero.
ZERO = 1e-20
#: Gradients that are zero in exact math.
ZERO_IN_EXACT_MATH = ('attn.k.bias', )


def noise_only(expected: Dict) -> set:
    return {name for name, ref in expected.items()
            if name.endswith(ZERO_IN_EXACT_MATH) or ref.abs().max().item() <= ZERO}


def parse_args():
    parser = argparse.ArgumentParser(
        description='Fast vs reference attention: outputs and gradients',
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument('--arch', default='tiny', choices=('tiny', 'small', 'base', 'mini'))
    parser.add_argument('--sizes', nargs='+', default=['224', '800x1216'],
                        help='input sizes, H or HxW (default: 224 800x1216)')
    parser.add_argument('--batch-size', type=int, default=2)
    parser.add_argument('--dtypes', nargs='+', default=['fp32', 'bf16'],
                        choices=('fp32', 'bf16'))
    parser.add_argument('--impls', nargs='+', default=['sdpa', 'flex'],
                        choices=('sdpa', 'flex'), help='fast kinds to check (default: both)')
    parser.add_argument('--rtol', type=float, default=1e-4, help='fp32 tolerance')
    parser.add_argument('--compile', action='store_true',
                        help='also check torch.compile of the fast path')
    parser.add_argument('--kernel-sizes', nargs='*', default=None,
                        help='key maps HxW for the FlexAttention kernel check (default: '
                        '7x7 16x17 50x76 on CUDA, none on the CPU)')
    parser.add_argument('--device', default=None, help='default: cuda if available')
    parser.add_argument('--quiet', action='store_true',
                        help='print only the worst tensors and the summary')
    args = parser.parse_args()
    args.device = torch.device(args.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    if args.kernel_sizes is None:
        args.kernel_sizes = (['7x7', '16x17', '50x76']
                             if args.device.type == 'cuda' else [])
    try:
        args.sizes = [tuple(int(v) for v in s.lower().split('x')) * (2 if 'x' not in s else 1)
                      for s in args.sizes]
        args.kernel_sizes = [tuple(int(v) for v in s.lower().split('x')) * (
            2 if 'x' not in s else 1) for s in args.kernel_sizes]
    except ValueError:
        parser.error(f'--sizes and --kernel-sizes take H or HxW, got {args.sizes} '
                     f'{args.kernel_sizes}')
    return args


def check_flex_kernel(size, dtype: str, args) -> bool:
    """FlexAttention with the in-kernel bias vs the materialised bias, one D block's core
    (DAT-T stage 3: 12 heads, 3 groups, head dim 32)."""
    from dat.models.layers import DeformableAttention
    from dat.models.layers.deformable_attention import reference_points
    device, (H, W), (B, G, M, d) = args.device, size, (2, 3, 12, 32)
    torch.manual_seed(0)
    attn = DeformableAttention(M * d, M, G, (H, W), offset_kernel_size=5).to(device)
    with torch.no_grad():
        attn.rpe_table.normal_()
    refs = reference_points(H, W, torch.float32, device)
    offsets = (torch.rand(B, G, H, W, 2, device=device) * 2 - 1) * torch.tensor(
        [2 / H, 2 / W], device=device)
    positions = (refs + offsets).requires_grad_()
    qkv32 = torch.randn(3, B, M, H * W, d, device=device).unbind(0)
    grads_wanted = device.type == 'cuda'  # no FlexAttention backward on the CPU

    def materialised(q, k, v):
        logits = (q @ k.transpose(-2, -1)).float() * attn.scale
        logits = logits + attn.position_bias(positions, H, W)
        return logits.softmax(-1).to(v.dtype) @ v

    def flex(q, k, v):
        return fast_attention.deformable_flex_attention(
            q, k, v, attn.rpe_table, positions.reshape(B, G, H * W, 2),
            refs.reshape(-1, 2), attn.scale)

    def run_kernel(fn, dt):
        qkv = [t.to(dt).requires_grad_(grads_wanted) for t in qkv32]
        with torch.set_grad_enabled(grads_wanted):
            out = fn(*qkv)
        result = {'out': out.detach().float()}
        if grads_wanted:
            leaves = qkv + [attn.rpe_table, positions]
            grads = torch.autograd.grad((out.float() * weights).sum(), leaves)
            result.update({f'grad {n}': g.float() for n, g in
                           zip(('q', 'k', 'v', 'rpe_table', 'positions'), grads)})
        return result

    weights = torch.randn(B, M, H * W, d, device=device)
    to_dtype = dict(fp32=torch.float32, bf16=torch.bfloat16)
    reference32 = run_kernel(materialised, torch.float32)
    fast_err = differences(run_kernel(flex, to_dtype[dtype]), reference32)
    if dtype == 'fp32':
        limits = {name: args.rtol for name in fast_err}
    else:
        ref_err = differences(run_kernel(materialised, torch.bfloat16), reference32)
        limits = {name: 2 * ref_err[name][1] + 1e-3 for name in fast_err}
    # Only the output decides: 'flex' runs FlexAttention in inference only.
    failed = [name for name, (_, rel) in fast_err.items()
              if name == 'out' and not rel <= limits[name]]
    print(f'  FlexAttention {H}x{W} ({H * W} keys) {dtype}: ' + ', '.join(
        f'{name} rel {rel:.2e}' for name, (_, rel) in fast_err.items())
        + (f'  FAIL: {", ".join(failed)}' if failed else '  ok'))
    return not failed


class KernelCounter:
    """Counts the deformable blocks that went through FlexAttention (eager calls only)."""

    def __init__(self):
        self.counts = Counter()
        self._flex = fast_attention.deformable_flex_attention

    def __enter__(self):
        def counted(*args, **kwargs):
            self.counts['flex'] += 1
            return self._flex(*args, **kwargs)
        fast_attention.deformable_flex_attention = counted
        return self

    def __exit__(self, *exc):
        fast_attention.deformable_flex_attention = self._flex


def flex_blocks(model, size) -> int:
    """The deformable blocks of ``model`` with enough keys for FlexAttention at ``size``."""
    from dat.models.backbones.dat import PATCH_SIZE
    return sum(isinstance(block.attn, DeformableAttention) and
               (size[0] // PATCH_SIZE >> i) * (size[1] // PATCH_SIZE >> i)
               >= fast_attention.FLEX_MIN_KEYS
               for i, stage in enumerate(model.stages) for block in stage.blocks)


def run(model, x, weights, impl: str, dtype: str, seed: int = 0, inference: bool = False):
    """Outputs and parameter gradients (float32) of one forward/backward; with
    ``inference``, the outputs of a forward in eval mode without gradients."""
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    autocast = torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=dtype == 'bf16')
    set_attention_impl(model, impl)  # the model's own layers (compiled or not)
    if inference:
        model.eval()
        with torch.no_grad(), autocast:
            outs = model(x)
        model.train()
        return {f'out{i}': o.float() for i, o in enumerate(outs)}
    with autocast, warnings.catch_warnings():
        warnings.filterwarnings('ignore', message="attn_impl 'flex' is for inference")
        outs = model(x)
    loss = sum((o.float() * w).sum() for o, w in zip(outs, weights))
    loss.backward()
    results = {f'out{i}': o.detach().float() for i, o in enumerate(outs)}
    results.update({f'grad {n}': p.grad.float() for n, p in model.named_parameters()
                    if p.grad is not None})
    return results


def differences(actual: Dict, expected: Dict) -> Dict[str, Tuple[float, float]]:
    if actual.keys() != expected.keys():
        missing = sorted(set(expected) ^ set(actual))
        raise RuntimeError(f'the two paths produced different tensors: {missing[:5]}')
    noise = noise_only(expected)
    largest_grad = max((ref.abs().max().item() for name, ref in expected.items()
                        if name.startswith('grad')), default=1.0)
    diffs = {}
    for name, ref in expected.items():
        abs_err = (actual[name] - ref).abs().max().item()
        scale = largest_grad if name in noise else ref.abs().max().item()
        diffs[name] = (abs_err, abs_err / scale)
    return diffs


def check_case(model, fast_model, x, weights, dtype, impl, args, label,
               inference: bool = False) -> bool:
    """``fast_model`` (the model itself, or compiled) with ``impl`` vs ``model``: a training
    step, or with ``inference`` a forward without gradients."""
    reference32 = run(model, x, weights, 'reference', 'fp32', inference=inference)
    with KernelCounter() as kernels:
        fast = run(fast_model, x, weights, impl, dtype, inference=inference)
    fast_err = differences(fast, reference32)
    zero = noise_only(reference32)
    if dtype == 'fp32':
        limits = {name: args.rtol for name in fast_err}
        ref_err = None
    else:
        ref_err = differences(run(model, x, weights, 'reference', dtype, inference=inference),
                              reference32)
        limits = {name: 2 * ref_err[name][1] + 1e-3 for name in fast_err}
    failed = [name for name, (_, rel) in fast_err.items()
              if not rel <= limits[name]]  # NaN fails too
    switched = sorted({m.flex_guard.reason for m in model.modules() if impl == 'flex' and
                       isinstance(m, DeformableAttention) and m.flex_guard.reason})
    # FlexAttention calls are counted in eager runs only; training never calls it.
    expected = flex_blocks(model, x.shape[-2:]) if fast_model is model else 0
    if impl == 'flex' and inference and x.device.type == 'cuda' and (
            switched or kernels.counts['flex'] < expected):
        failed.append('FlexAttention did not run')
    if impl == 'flex' and not inference and kernels.counts['flex']:
        failed.append('FlexAttention ran in training')
    worst = sorted(fast_err, key=lambda n: fast_err[n][1] / limits[n], reverse=True)
    shown = worst[:5] if args.quiet else list(fast_err)
    print(f'\n== {label}{" inference" if inference else ""} ==')
    for name in shown:
        abs_err, rel = fast_err[name]
        line = f'  {name:60s} max abs {abs_err:.3e}  rel {rel:.3e}' + (
            '*' if name in zero else ' ')
        if ref_err is not None:
            line += f'  (reference {dtype} rel {ref_err[name][1]:.3e})'
        print(line + ('  FAIL' if name in failed else ''))
    worst_out = max((v[1] for k, v in fast_err.items() if k.startswith('out')), default=0)
    worst_grad = max((v[1] for k, v in fast_err.items()
                      if k.startswith('grad') and k not in zero), default=0)
    n_flex = kernels.counts['flex']
    print(f'  -> {"FAIL" if failed else "ok"}: {len(fast_err)} tensors, worst output rel '
          f'{worst_out:.2e}, worst gradient rel {worst_grad:.2e} (closest to its limit: '
          f'{worst[0]}; * = zero in exact math, relative to the largest gradient); deformable '
          f'blocks through FlexAttention: {n_flex if n_flex else "none"}'
          + (f'; failed: {", ".join(failed[:5])}' if failed else ''))
    for reason in switched:
        print(f'  -> switched to SDPA: {reason}')
    return not failed


@contextlib.contextmanager
def tf32_off(device: torch.device):
    """TF32 off for matmuls and cuDNN on CUDA (put back afterwards); says so."""
    if device.type != 'cuda':
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    print(f'TF32 off for every comparison: torch.backends.cuda.matmul.allow_tf32 = False, '
          f'torch.backends.cudnn.allow_tf32 = False (were {saved[0]}, {saved[1]})')
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def main():
    args = parse_args()
    device = args.device
    name = torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'
    print(f'device: {name}, torch {torch.__version__}, arch {args.arch}, '
          f'batch {args.batch_size}')
    with tf32_off(args.device):
        ok = check_all(args)
    print('\nALL OK' if ok else '\nFAILED')
    return 0 if ok else 1


def check_all(args) -> bool:
    device = args.device
    ok = True
    if args.kernel_sizes:
        print('\n== FlexAttention kernel vs materialised bias (gradients: '
              f'{"printed, not required" if device.type == "cuda" else "no, CPU"}) ==')
        for size in args.kernel_sizes:
            for dtype in args.dtypes:
                ok &= check_flex_kernel(size, dtype, args)
    for size in args.sizes:
        torch.manual_seed(0)
        arch = MINI if args.arch == 'mini' else args.arch
        model = DAT(arch, img_size=224 if args.arch != 'mini' else 64,
                    window_size=7 if args.arch != 'mini' else [4, 4, 4, 2],
                    drop_path_rate=0.2, out_indices=(0, 1, 2, 3)).to(device).train()
        with torch.no_grad():  # tables with values that matter (they start near zero)
            for name, param in model.named_parameters():
                if name.endswith(('rpe_table', 'relative_position_bias_table')):
                    param.normal_(0, 1)
        x = torch.randn(args.batch_size, 3, *size, device=device)
        with torch.no_grad():
            weights = [torch.randn_like(o) for o in model(x)]
        compiled = torch.compile(model) if args.compile else None
        for dtype in args.dtypes:
            for impl in args.impls:
                label = f'{args.arch} {size[0]}x{size[1]} batch {args.batch_size} {dtype} {impl}'
                ok &= check_case(model, model, x, weights, dtype, impl, args, label)
                if impl == 'flex':
                    ok &= check_case(model, model, x, weights, dtype, impl, args, label,
                                     inference=True)
                if compiled is not None:
                    ok &= check_case(model, compiled, x, weights, dtype, impl, args,
                                     label + ' + torch.compile')
        del model, compiled
        if device.type == 'cuda':
            torch.cuda.empty_cache()
    return ok


if __name__ == '__main__':
    sys.exit(main())
