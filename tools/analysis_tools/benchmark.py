"""Measure training-step and inference throughput (img/s) and peak memory.

    # DAT-T, the three goal settings of docs/benchmarks.md (on a GPU)
    python tools/analysis_tools/benchmark.py --arch tiny --batch-size 128 --amp bf16
    python tools/analysis_tools/benchmark.py --arch tiny --batch-size 4 --img-size 896 \\
        --amp bf16 --mode train
    # reference vs SDPA attention, and timm's Swin of the same size side by side
    python tools/analysis_tools/benchmark.py --arch tiny --impl reference --compare swin
    # DAT-T++, compiled (the record's first_step_s is the first step, compilation included)
    python tools/analysis_tools/benchmark.py --model datpp --arch tiny --compile
    # a model from a config (run in 'tensor' mode), with a profile of the top ops
    python tools/analysis_tools/benchmark.py --config configs/dat/dat-tiny_8xb128-amp_in1k.py \\
        --device cpu --batch-size 2 --iters 3 --profile

A training step is forward, cross-entropy on random labels (for ``--config``: the sum of the
means of the output tensors), backward and an AdamW step. Inference is a forward pass under
``torch.no_grad()`` in eval mode. ``--arch`` builds the DAT backbone (``--model datpp``:
DAT++; position tables made for ``--img-size``, stochastic depth of the ImageNet recipe:
DAT 0.2/0.3/0.5, DAT++ 0.2/0.4/0.7) with a mean-pool and linear 1000-class head;
``--compare swin`` builds timm's ``swin_{arch}_patch4_window7_224`` (random weights, same
``--img-size``, DAT's stochastic depth).

Defaults: on CUDA, batch 128, bf16 autocast, 20 timed iterations after 5 untimed ones; on
the CPU, batch 16, fp32, 10 after 2, so that ``--arch tiny`` with the defaults (train, then
inference) takes about a minute on 2 cores.

Each measurement prints one JSON line on stdout as soon as it is measured. ``peak_mem_gib`` is
``torch.cuda.max_memory_allocated`` during the timed iterations on CUDA, and null on the
CPU, where ``rss_peak_gib`` (the process's peak resident memory so far, earlier
measurements included) is given instead. ``first_step_s`` is the first (untimed) iteration,
which with ``--compile`` includes the compilation of forward and backward. ``--profile``
prints the top ops by self time (CUDA time on CUDA) on stderr, so stdout stays JSON lines.
"""
import argparse
import contextlib
import json
import os
import platform
import resource
import sys
import time
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))

from dat.families import FAMILIES, family_by_key  # noqa: E402
from dat.models.layers import ATTENTION_IMPLS, attention_kernels, set_attention_impl  # noqa: E402

ARCHS = ('tiny', 'small', 'base')
#: Stochastic depth of Swin's ImageNet recipe, by size (the families': dat.families).
DROP_PATH = dict(tiny=0.2, small=0.3, base=0.5)
AMP_DTYPES = dict(bf16=torch.bfloat16, fp16=torch.float16, none=None)
#: Defaults by device. On the CPU: fp32 and a few small iterations, so that the DAT-T run
#: with the defaults (train, then inference) takes about a minute on 2 cores.
DEFAULTS = dict(cuda=dict(batch_size=128, amp='bf16', iters=20, warmup=5),
                cpu=dict(batch_size=16, amp='none', iters=10, warmup=2))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Training and inference throughput and peak memory',
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    model = parser.add_mutually_exclusive_group()
    model.add_argument('--arch', choices=ARCHS, default=None,
                       help='DAT size with a linear head (default: tiny)')
    model.add_argument('--config', help='build the model of this config instead')
    parser.add_argument('--model', choices=[f.key for f in FAMILIES.values()], default='dat',
                        help='with --arch: DAT or DAT++ (default: dat)')
    parser.add_argument('--batch-size', type=int, default=None,
                        help='default: 128 on CUDA, 16 on the CPU')
    parser.add_argument('--img-size', type=int, nargs='+', default=[224],
                        help='input size: H W, or one number for a square (default: 224)')
    parser.add_argument('--amp', choices=tuple(AMP_DTYPES), default=None,
                        help='autocast dtype, or none for fp32 (default: bf16 on CUDA, none '
                        'on the CPU, where bf16 autocast is several times slower)')
    parser.add_argument('--compile', action='store_true', help='torch.compile the model')
    parser.add_argument('--compile-backend', default='inductor',
                        help="torch.compile's backend (default: inductor; e.g. eager for a "
                        'quick check that the model traces)')
    parser.add_argument('--impl', choices=ATTENTION_IMPLS, default='auto',
                        help="attn_impl of every attention layer of the model (default: auto, "
                        "the model's own choice: each layer's best for the device)")
    parser.add_argument('--compare', choices=('swin', ), default=None,
                        help="also measure timm's Swin of the same size")
    parser.add_argument('--mode', choices=('train', 'inference', 'all'), default='all')
    parser.add_argument('--iters', type=int, default=None,
                        help='timed iterations (default: 20 on CUDA, 10 on the CPU)')
    parser.add_argument('--warmup', type=int, default=None,
                        help='untimed iterations first, at least 1 (its time is first_step_s; '
                        'default: 5 on CUDA, 2 on the CPU)')
    parser.add_argument('--device', default=None,
                        help='cuda, cuda:1, cpu, ... (default: cuda if available)')
    parser.add_argument('--profile', action='store_true',
                        help='profile a few iterations and print the top ops by self time')
    parser.add_argument('--profile-rows', type=int, default=15)
    args = parser.parse_args(argv)
    if len(args.img_size) not in (1, 2):
        parser.error('--img-size takes H W or a single size')
    args.img_size = tuple(args.img_size) * (3 - len(args.img_size))
    if args.config is None and args.arch is None:
        args.arch = 'tiny'
    if args.compare and args.config:
        parser.error('--compare swin needs --arch (the Swin of the same size)')
    args.device = torch.device(args.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    if args.device.type == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda but torch.cuda.is_available() is False')
    for key, value in DEFAULTS['cuda' if args.device.type == 'cuda' else 'cpu'].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if min(args.batch_size, args.iters) < 1 or args.warmup < 0:
        parser.error('--batch-size and --iters must be >= 1, --warmup >= 0')
    return args


class Classifier(nn.Module):
    """Backbone (last stage, (B, C, H, W)) -> mean pool -> linear head."""

    def __init__(self, backbone: nn.Module, dim: int, num_classes: int = 1000):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        return self.head(self.backbone(x)[-1].mean((2, 3)))


def build_from_config(path: str) -> nn.Module:
    from dat.adapters.builder import TensorMode, build_model_from_config
    from dat.cli import fail, load_config

    try:
        return TensorMode(build_model_from_config(load_config(path)))
    except ValueError as err:
        fail(f'{path}: {err}')


def build_models(args) -> List[Tuple[str, str, nn.Module]]:
    """(name, impl, model) for each model to measure."""
    if args.config:
        name = os.path.splitext(os.path.basename(args.config))[0]
        return [(name, args.impl, build_from_config(args.config))]
    family = family_by_key(args.model)
    dat = family.backbone(args.arch, img_size=args.img_size,
                          drop_path_rate=family.drop_path[args.arch])
    models = [(f'{args.model}-{args.arch}', args.impl, Classifier(dat, dat.num_features[-1]))]
    if args.compare == 'swin':
        import timm
        swin = timm.create_model(f'swin_{args.arch}_patch4_window7_224', pretrained=False,
                                 img_size=args.img_size, drop_path_rate=DROP_PATH[args.arch])
        models.append((f'swin-{args.arch} (timm)', 'timm', swin))
    return models


def loss_of(output) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output.float().mean()
    if isinstance(output, dict):
        output = list(output.values())
    return sum(loss_of(o) for o in output)


class Runner:
    """One model in one mode: ``step()`` runs an iteration."""

    def __init__(self, model: nn.Module, mode: str, args, classification: bool):
        self.model, self.mode, self.args = model, mode, args
        dtype = AMP_DTYPES[args.amp]
        self.autocast = (torch.autocast(args.device.type, dtype=dtype) if dtype
                         else contextlib.nullcontext())
        self.x = torch.randn(args.batch_size, 3, *args.img_size, device=args.device)
        self.labels = torch.randint(0, 1000, (args.batch_size, ), device=args.device)
        self.classification = classification
        if mode == 'train':
            model.train()
            self.optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
            use_scaler = args.amp == 'fp16' and args.device.type == 'cuda'
            self.scaler = torch.amp.GradScaler('cuda') if use_scaler else None
        else:
            model.eval()

    def step(self):
        if self.mode == 'inference':
            with torch.no_grad(), self.autocast:
                self.model(self.x)
            return
        with self.autocast:
            out = self.model(self.x)
            loss = (F.cross_entropy(out.float(), self.labels) if self.classification
                    else loss_of(out))
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()


def synchronize(device: torch.device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def measure(runner: Runner, args) -> Dict:
    device = args.device
    start = time.perf_counter()
    runner.step()  # with --compile: compiles
    synchronize(device)
    first_step = time.perf_counter() - start
    for _ in range(args.warmup - 1):
        runner.step()
    synchronize(device)
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(args.iters):
        runner.step()
    synchronize(device)
    seconds = time.perf_counter() - start
    result = dict(img_per_s=float(f'{args.batch_size * args.iters / seconds:.4g}'),
                  ms_per_iter=float(f'{1000 * seconds / args.iters:.4g}'),
                  first_step_s=round(first_step, 2))
    if device.type == 'cuda':
        result['peak_mem_gib'] = round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
    else:
        result['peak_mem_gib'] = None
        # ru_maxrss is in KiB on Linux (bytes on macOS).
        unit = 1 if platform.system() == 'Darwin' else 1024
        result['rss_peak_gib'] = round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * unit / 2**30, 3)
    return result


def profile(runner: Runner, args, title: str):
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile
    activities = [ProfilerActivity.CPU]
    sort_by = 'self_cpu_time_total'
    if args.device.type == 'cuda':
        activities.append(ProfilerActivity.CUDA)
        sort_by = 'self_cuda_time_total'
    runner.step()
    synchronize(args.device)
    with torch_profile(activities=activities) as prof:
        for _ in range(min(args.iters, 5)):
            runner.step()
        synchronize(args.device)
    print(f'\n== profile: {title}, {min(args.iters, 5)} iterations, top ops by '
          f'{sort_by} ==', file=sys.stderr)
    print(prof.key_averages().table(sort_by=sort_by, row_limit=args.profile_rows,
                                    max_name_column_width=60), file=sys.stderr)


def device_name(device: torch.device) -> str:
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    return f'{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads'


def main(argv: Optional[List[str]] = None):
    args = parse_args(argv)
    torch.manual_seed(0)
    stdout = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):  # logs to stderr, stdout for JSON lines
        run_all(args, lambda record: print(json.dumps(record), file=stdout, flush=True))


def run_all(args, emit):
    modes = ('train', 'inference') if args.mode == 'all' else (args.mode, )
    models = build_models(args)
    for name, impl, model in models:
        model = model.to(args.device)
        # timm's Swin has no attention layers of ours; 'auto' keeps the model's own choice.
        if impl not in ('timm', 'auto'):
            set_attention_impl(model, impl)
        kinds = set(attention_kernels(model, args.device).values())
        resolved = '+'.join(sorted(kinds)) if kinds else impl
        if args.compile:
            model = torch.compile(model, backend=args.compile_backend)
        for mode in modes:
            runner = Runner(model, mode, args, classification=args.config is None)
            record = dict(mode=mode, model=name, impl=resolved, batch_size=args.batch_size,
                          img_size=list(args.img_size), amp=args.amp,
                          compile=args.compile)
            record.update(measure(runner, args))
            record.update(iters=args.iters, warmup=args.warmup,
                          device=device_name(args.device), torch=torch.__version__)
            emit(record)
            if args.profile:
                profile(runner, args, f'{name} {resolved} {mode}')
            del runner
        del model
        if args.device.type == 'cuda':
            torch.cuda.empty_cache()


if __name__ == '__main__':
    main()
