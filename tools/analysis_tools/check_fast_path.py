"""Check that the ``'sdpa'`` attention kernel gives the ``'reference'`` numbers.

    # on a GPU: DAT-T and DAT-T++ backbones (all four outputs), 224 and a detection size,
    # fp32 (TF32 off) and bf16
    python tools/analysis_tools/check_fast_path.py
    python tools/analysis_tools/check_fast_path.py --compile   # also the compiled fast paths
    # a CPU smoke test
    python tools/analysis_tools/check_fast_path.py --device cpu --arch mini --sizes 64 72x93

On CUDA, every comparison runs with TF32 off (``torch.backends.cuda.matmul.allow_tf32`` and
``torch.backends.cudnn.allow_tf32`` False; the script says so and puts them back at the
end): cuDNN runs fp32 convolutions in TF32 by default, which alone puts the fp32 paths
~1e-3 apart (measured on an H200), and the bf16 cases compare with the fp32 reference.

For every model in ``--models`` (DAT, DAT++), size and dtype, the backbone runs forward and
backward in train mode (stochastic depth 0.2, the same seed for both paths, so both drop the
same blocks) with the reference kernel (``grid_sample`` in the D blocks) and with ``'sdpa'``
(gathered key rows and the separable position bias, :mod:`dat.models.layers.bilinear`), and
the script prints, for each output map and each parameter gradient, the max abs difference
and the relative difference (max abs difference / max abs value of the reference).
Gradients that vanish in exact math (the key bias: softmax ignores a constant per query) or
are zero in the reference hold only rounding noise; their difference is divided by the
largest gradient of the model instead.

- fp32 passes when every relative difference is at most ``--rtol`` (1e-4).
- bf16 (autocast) compares both paths against the fp32 reference: the fast path passes when
  its error is at most ``2 x`` the reference path's own autocast error + 1e-3, i.e. it is
  within the normal tolerance for autocast.

Each case also checks that the attention layers ran the kernels that
:func:`~dat.models.layers.attention_kernels` reports for it. Exit code 1 if anything fails.
The position bias alone, at DAT-T's stage shapes, is checked and timed by
``tools/analysis_tools/bias_check.py``.
"""
import argparse
import contextlib
import os
import sys
from collections import Counter
from typing import Dict, Tuple

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))

from dat.models import DAT, DATPlusPlus  # noqa: E402
from dat.models.layers import attention_kernels, attention_layers, set_attention_impl  # noqa: E402

#: A scaled-down DAT with every block kind, for quick CPU runs.
MINI = dict(embed_dims=[16, 32, 64, 64], depths=[2, 2, 2, 2], num_heads=[1, 2, 4, 4],
            groups=[-1, -1, 2, 2], block_types=['LS', 'LS', 'LD', 'SD'])
#: The same for DAT++ (N and D blocks; inputs of at least 33 px).
MINI_PP = dict(MINI, groups=[1, 1, 2, 2], block_types=['ND', 'ND', 'ND', 'DD'])


#: A reference tensor whose max abs value is below this counts as zero.
ZERO = 1e-20
#: Gradients that are zero in exact math.
ZERO_IN_EXACT_MATH = ('attn.k.bias', )
DTYPES = dict(fp32=torch.float32, bf16=torch.bfloat16)


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
    parser.add_argument('--models', nargs='+', default=['dat', 'datpp'],
                        choices=('dat', 'datpp'), help='DAT and/or DAT++ (default: both)')
    parser.add_argument('--rtol', type=float, default=1e-4, help='fp32 tolerance')
    parser.add_argument('--compile', action='store_true',
                        help='also check torch.compile of the fast path')
    parser.add_argument('--device', default=None, help='default: cuda if available')
    parser.add_argument('--quiet', action='store_true',
                        help='print only the worst tensors and the summary')
    args = parser.parse_args()
    args.device = torch.device(args.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    try:
        args.sizes = [tuple(int(v) for v in s.lower().split('x')) * (2 if 'x' not in s else 1)
                      for s in args.sizes]
    except ValueError:
        parser.error(f'--sizes takes H or HxW, got {args.sizes}')
    return args


class KernelRecorder:
    """Records the kernel each attention layer of a model chose in its forwards (eager calls
    of ``kernel_for``), by layer name."""

    def __init__(self, model):
        self.layers = attention_layers(model)
        self.ran: Dict[str, set] = {}

    def __enter__(self):
        for name, layer in self.layers.items():
            def recorded(x, _name=name, _choose=layer.kernel_for):
                kernel = _choose(x)
                self.ran.setdefault(_name, set()).add(kernel)
                return kernel
            layer.kernel_for = recorded
        return self

    def __exit__(self, *exc):
        for layer in self.layers.values():
            del layer.kernel_for


def run(model, x, weights, impl: str, dtype: str, seed: int = 0):
    """Outputs and parameter gradients (float32) of one forward/backward in train mode."""
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    autocast = torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=dtype == 'bf16')
    set_attention_impl(model, impl)  # the model's own layers (compiled or not)
    with autocast:
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


def check_case(model, fast_model, x, weights, dtype, impl, args, label) -> bool:
    """A training step of ``fast_model`` (the model itself, or compiled) with ``impl`` vs
    ``model`` with the reference kernel."""
    reference32 = run(model, x, weights, 'reference', 'fp32')
    eager = fast_model is model
    with KernelRecorder(model) if eager else contextlib.nullcontext() as recorder:
        fast = run(fast_model, x, weights, impl, dtype)
    fast_err = differences(fast, reference32)
    zero = noise_only(reference32)
    if dtype == 'fp32':
        limits = {name: args.rtol for name in fast_err}
        ref_err = None
    else:
        ref_err = differences(run(model, x, weights, 'reference', dtype), reference32)
        limits = {name: 2 * ref_err[name][1] + 1e-3 for name in fast_err}
    failed = [name for name, (_, rel) in fast_err.items()
              if not rel <= limits[name]]  # NaN fails too
    ran = ''
    if eager:  # the kernels that ran vs those reported for these conditions
        set_attention_impl(model, impl)
        reported = attention_kernels(model, x.device, DTYPES[dtype], training=True)
        wrong = [name for name, kernel in reported.items()
                 if recorder.ran.get(name) != {kernel}]
        if wrong:
            failed.append(f'kernels ran {recorder.ran.get(wrong[0])} where '
                          f'{reported[wrong[0]]!r} is reported ({wrong[0]}; {len(wrong)} '
                          'layers)')
        kinds = Counter(reported.values())
        ran = '; kernels ran as reported: ' + ', '.join(
            f'{kernel} x{n}' for kernel, n in sorted(kinds.items()))
    worst = sorted(fast_err, key=lambda n: fast_err[n][1] / limits[n], reverse=True)
    shown = worst[:5] if args.quiet else list(fast_err)
    print(f'\n== {label} ==')
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
    print(f'  -> {"FAIL" if failed else "ok"}: {len(fast_err)} tensors, worst output rel '
          f'{worst_out:.2e}, worst gradient rel {worst_grad:.2e} (closest to its limit: '
          f'{worst[0]}; * = zero in exact math, relative to the largest gradient)' + ran
          + (f'; failed: {", ".join(failed[:5])}' if failed else ''))
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
    print(f'device: {name}, torch {torch.__version__}, models {" ".join(args.models)}, '
          f'arch {args.arch}, batch {args.batch_size}')
    with tf32_off(args.device):
        ok = check_all(args)
    print('\nALL OK' if ok else '\nFAILED')
    return 0 if ok else 1


def build(model_name: str, arch: str):
    """The backbone to check, all four outputs, stochastic depth 0.2."""
    if model_name == 'datpp':
        return DATPlusPlus(MINI_PP if arch == 'mini' else arch,
                           img_size=224 if arch != 'mini' else 64, drop_path_rate=0.2,
                           out_indices=(0, 1, 2, 3))
    return DAT(MINI if arch == 'mini' else arch, img_size=224 if arch != 'mini' else 64,
               window_size=7 if arch != 'mini' else [4, 4, 4, 2], drop_path_rate=0.2,
               out_indices=(0, 1, 2, 3))


def check_all(args) -> bool:
    device = args.device
    ok = True
    for model_name in args.models:
        for size in args.sizes:
            torch.manual_seed(0)
            model = build(model_name, args.arch).to(device).train()
            with torch.no_grad():  # tables with values that matter (they start near zero)
                for name, param in model.named_parameters():
                    if name.endswith(('rpe_table', 'relative_position_bias_table')):
                        param.normal_(0, 1)
            x = torch.randn(args.batch_size, 3, *size, device=device)
            with torch.no_grad():
                weights = [torch.randn_like(o) for o in model(x)]
            compiled = torch.compile(model) if args.compile else None
            for dtype in args.dtypes:
                label = (f'{model_name}-{args.arch} {size[0]}x{size[1]} batch '
                         f'{args.batch_size} {dtype} sdpa')
                ok &= check_case(model, model, x, weights, dtype, 'sdpa', args, label)
                if compiled is not None:
                    ok &= check_case(model, compiled, x, weights, dtype, 'sdpa', args,
                                     label + ' + torch.compile')
            del model, compiled
            if device.type == 'cuda':
                torch.cuda.empty_cache()
    return ok


if __name__ == '__main__':
    sys.exit(main())
