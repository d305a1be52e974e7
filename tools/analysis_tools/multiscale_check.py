"""Multi-scale training (or inference) of the DAT backbone: memory and compilations over many
input sizes, as a detector's multi-scale pipeline feeds it.

    # on a GPU: DAT-T, 50 training iterations of batch 2 at random detection sizes, bf16
    python tools/analysis_tools/multiscale_check.py
    python tools/analysis_tools/multiscale_check.py --mode inference
    # on the CPU: 20 sizes, forward only
    python tools/analysis_tools/multiscale_check.py --device cpu --mode inference \\
        --iters 20 --batch-size 1 --amp none --scale 0.25
    # a table of the JSON lines of one or more runs
    python tools/analysis_tools/multiscale_check.py --summarize runs.jsonl

Each iteration draws a size as the 3x recipes' multi-scale pipeline makes them (short side
480..800 in steps of 32, long side up to 1333, a random aspect ratio between 1 and 2, either
orientation), padded to a multiple of 32 as mmdet's data preprocessor does. A training
iteration is forward, a loss on all four outputs (the mean of their squares), backward and
an AdamW step, under autocast (``--amp``). The network is the backbone alone: the detector's
neck and heads hold no per-size state, and their CUDA ops (mmcv) need not be installed.

At each iteration in ``--report-at`` (and the last) it prints one JSON line: the sizes seen,
memory (CUDA: ``memory_allocated`` now and ``max_memory_allocated`` so far, in MiB; CPU: the
process's peak RSS), the bytes in the backbone's size caches and how many attention layers
run each kernel (:func:`~dat.models.layers.attention_kernels` for the run's device, dtype
and mode). Exit code 1 if memory allocated at the last report
exceeds that at the first by more than ``--max-growth`` (default 10%).
"""
import argparse
import contextlib
import json
import os
import platform
import random
import resource
import sys
import time
from collections import Counter

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))

from dat.models import DAT  # noqa: E402
from dat.models.layers import ATTENTION_IMPLS, SizeCache, attention_kernels  # noqa: E402

#: Short sides of the multi-scale pipeline (configs/_base_/det/ms_crop_aug.py) and the
#: longest side it allows.
SHORT_SIDES = tuple(range(480, 801, 32))
MAX_LONG_SIDE = 1333
PAD_DIVISOR = 32


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Memory of DAT over many input sizes',
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument('--arch', default='tiny', choices=('tiny', 'small', 'base'))
    parser.add_argument('--impl', default='auto', choices=ATTENTION_IMPLS,
                        help="the backbone's attn_impl (default: auto)")
    parser.add_argument('--mode', default='train', choices=('train', 'inference'))
    parser.add_argument('--iters', type=int, default=50)
    parser.add_argument('--batch-size', type=int, default=2)
    parser.add_argument('--amp', default='bf16', choices=('bf16', 'fp16', 'none'))
    parser.add_argument('--scale', type=float, default=1.0,
                        help='multiply the pipeline sizes by this (e.g. 0.25 for a quick CPU '
                        'run); sizes stay multiples of 32, at least 64')
    parser.add_argument('--report-at', type=int, nargs='+', default=[10, 50])
    parser.add_argument('--max-growth', type=float, default=0.1,
                        help='allowed growth of memory allocated from the first to the last '
                        'report (CUDA only; default 0.1)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--device', default=None, help='default: cuda if available')
    parser.add_argument('--summarize', metavar='JSONL',
                        help='print a table of the JSON lines in this file and exit')
    args = parser.parse_args(argv)
    args.device = torch.device(args.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    if args.iters < 1 or args.batch_size < 1:
        parser.error('--iters and --batch-size must be >= 1')
    return args


def random_size(rng: random.Random, scale: float = 1.0):
    """(H, W) of a padded batch from the multi-scale pipeline."""
    short = rng.choice(SHORT_SIDES)
    long = min(round(short * rng.uniform(1.0, 2.0)), MAX_LONG_SIDE)
    h, w = (short, long) if rng.random() < 0.5 else (long, short)

    def pad(side):
        return max(2 * PAD_DIVISOR, -(-round(side * scale) // PAD_DIVISOR) * PAD_DIVISOR)
    return pad(h), pad(w)


def memory(device: torch.device) -> dict:
    if device.type == 'cuda':
        return dict(allocated_mib=round(torch.cuda.memory_allocated(device) / 2**20, 1),
                    max_allocated_mib=round(torch.cuda.max_memory_allocated(device) / 2**20,
                                            1))
    unit = 1 if platform.system() == 'Darwin' else 1024  # ru_maxrss: KiB on Linux
    return dict(rss_peak_mib=round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * unit / 2**20, 1))


def summarize(path: str) -> str:
    """A table of the reports of the runs in a JSON-lines file (each run: its reports, then
    its summary line)."""
    lines = [f'{"runs":9s} {"mode":9s} {"iter":>5s} {"sizes":>5s} {"MiB now":>9s} '
             f'{"MiB peak":>9s} {"cache MiB":>9s}  kernels']
    pending = []
    with open(path) as f:
        for record in map(json.loads, filter(str.strip, f)):
            if 'iter' in record and 'runs' not in record:
                pending.append(record)
                continue
            for r in pending:
                now = r.get('allocated_mib', r.get('rss_peak_mib'))
                peak = r.get('max_allocated_mib', float('nan'))
                lines.append(
                    f'{record["runs"]:9s} {record["mode"]:9s} {r["iter"]:5d} '
                    f'{r["distinct_sizes"]:5d} {now:9.1f} {peak:9.1f} '
                    f'{r["size_cache_bytes"] / 2**20:9.2f}  '
                    + ', '.join(f'{k} x{n}' for k, n in sorted(r['kernels'].items())))
            pending = []
            lines.append(f'{record["runs"]:9s} {record["mode"]:9s} -> ok: {record["ok"]}, '
                         f'allocated growth {record.get("allocated_growth", "n/a")}, '
                         f'{record["device"]}')
    return '\n'.join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.summarize:
        print(summarize(args.summarize))
        return 0
    stdout = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):  # logs to stderr, stdout for JSON lines
        return run(args, lambda record: print(json.dumps(record), file=stdout, flush=True))


def run(args, emit) -> int:
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    device = args.device
    model = DAT(args.arch, out_indices=(0, 1, 2, 3), drop_path_rate=0.2,
                attn_impl=args.impl).to(device)
    model.train(args.mode == 'train')
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    dtype = dict(bf16=torch.bfloat16, fp16=torch.float16).get(args.amp)
    autocast = (torch.autocast(device.type, dtype=dtype) if dtype
                else contextlib.nullcontext())
    scaler = torch.amp.GradScaler(device.type) if args.amp == 'fp16' else None
    kernels = Counter(attention_kernels(model, device, dtype or torch.float32,
                                        training=args.mode == 'train').values())
    sizes, reports = [], []
    start = time.perf_counter()
    for it in range(1, args.iters + 1):
        size = random_size(rng, args.scale)
        sizes.append(size)
        x = torch.randn(args.batch_size, 3, *size, device=device)
        if args.mode == 'train':
            with autocast:
                loss = sum(out.float().pow(2).mean() for out in model(x))
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
        else:
            with torch.no_grad(), autocast:
                model(x)
        if it in args.report_at or it == args.iters:
            if device.type == 'cuda':
                torch.cuda.synchronize(device)
            report = dict(iter=it, distinct_sizes=len(set(sizes)), last_size=list(size),
                          **memory(device), size_cache_bytes=SizeCache.total_nbytes(),
                          kernels=dict(kernels),
                          seconds=round(time.perf_counter() - start, 1))
            reports.append(report)
            emit(report)
    summary = dict(arch=args.arch, attn_impl=args.impl,
                   runs='+'.join(sorted(kernels)),
                   mode=args.mode,
                   batch_size=args.batch_size, amp=args.amp, iters=args.iters,
                   device=torch.cuda.get_device_name(device) if device.type == 'cuda'
                   else 'cpu', torch=torch.__version__)
    ok = True
    if device.type == 'cuda' and len(reports) > 1:
        first, last = reports[0]['allocated_mib'], reports[-1]['allocated_mib']
        summary['allocated_growth'] = round(last / first - 1, 4)
        ok = last <= first * (1 + args.max_growth)
    summary['ok'] = ok
    emit(summary)
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
