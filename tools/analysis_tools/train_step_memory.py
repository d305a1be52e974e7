"""How much a training step grows the peak memory, on the CPU, for several models.

    # DAT-T++ beside DAT-T at 896 px, batch 1, each with the kernels given
    python tools/analysis_tools/train_step_memory.py dat-tiny:sdpa datpp-tiny:auto
    # DAT-T beside timm's Swin-T (the control of issue 21's memory goal)
    python tools/analysis_tools/train_step_memory.py swin-tiny:timm dat-tiny:sdpa

Each model (``ARCH:IMPL``, ARCH ``dat-tiny|small|base`` or ``datpp-tiny|small|base`` with IMPL
an ``attn_impl``, or ``swin-tiny|small|base:timm`` for timm's
``swin_{size}_patch4_window7_224`` at the same image size) runs in a fresh process: a
classifier (the backbone, a mean pool, a linear 1000-class head, the ImageNet recipe's
stochastic depth; Swin: timm's own head) takes one training step (forward,
cross-entropy, backward, AdamW step) to allocate its gradients and optimizer state, then a
second one under measurement. The growth is the process's peak resident memory during the
second step (``VmHWM``, reset through ``/proc/self/clear_refs``) minus its resident memory
before it. glibc is told to return every block over 64 KiB to the system when it is freed
(``MALLOC_MMAP_THRESHOLD_``), so the resident memory follows the live tensors. Linux only.

One JSON line per model on stdout; then, with two models or more, the ratio of each growth to
the first model's.
"""
import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))

#: Stochastic depth of Swin's ImageNet recipe, by size (the families': dat.families).
DROP_PATH = dict(tiny=0.2, small=0.3, base=0.5)
#: The DAT families by their key (``dat``, ``datpp``) and Swin (timm's).
MODELS = ('dat', 'datpp', 'swin')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Peak-memory growth of a CPU training step')
    parser.add_argument('models', nargs='+', metavar='ARCH:IMPL',
                        help='e.g. dat-tiny:sdpa datpp-tiny:auto (the first is the baseline '
                        'of the ratios)')
    parser.add_argument('--img-size', type=int, default=896)
    parser.add_argument('--batch-size', type=int, default=1)
    parser.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for spec in args.models:
        family, _, rest = spec.partition('-')
        arch, _, impl = rest.partition(':')
        if family not in MODELS or arch not in DROP_PATH or not impl \
                or (family == 'swin') != (impl == 'timm'):
            parser.error(f'model {spec!r}: expected ARCH:IMPL with ARCH one of dat-tiny, '
                         f'dat-small, dat-base, datpp-tiny, datpp-small, datpp-base, or '
                         f'swin-tiny:timm, swin-small:timm, swin-base:timm')
    return args


def memory_kib(field: str) -> int:
    with open('/proc/self/status') as status:
        for line in status:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise RuntimeError(f'no {field} in /proc/self/status')


def measure(spec: str, img_size: int, batch_size: int) -> dict:
    """One model's step, in this process."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    from dat.families import family_by_key
    from dat.models.layers import attention_kernels

    family, _, rest = spec.partition('-')
    arch, _, impl = rest.partition(':')
    torch.manual_seed(0)
    if family == 'swin':
        import timm
        model = timm.create_model(f'swin_{arch}_patch4_window7_224', pretrained=False,
                                  img_size=img_size, drop_path_rate=DROP_PATH[arch]).train()
        forward = model
        kernels = ['timm']
    else:
        entry = family_by_key(family)
        backbone = entry.backbone(arch, img_size=img_size, drop_path_rate=entry.drop_path[arch],
                                  attn_impl=impl)
        head = nn.Linear(backbone.num_features[-1], 1000)
        model = nn.ModuleDict(dict(backbone=backbone, head=head)).train()
        kernels = sorted(set(attention_kernels(backbone).values()))

        def forward(x):
            return head(backbone(x)[-1].mean((2, 3)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch_size, 3, img_size, img_size)
    labels = torch.randint(0, 1000, (batch_size, ))

    def step():
        F.cross_entropy(forward(x), labels).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)

    step()  # gradients and optimizer state
    before = memory_kib('VmRSS')
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')  # reset the peak (VmHWM) to the current resident memory
    start = time.perf_counter()
    step()
    seconds = time.perf_counter() - start
    growth = memory_kib('VmHWM') - before
    return dict(model=spec, kernels='+'.join(kernels), img_size=img_size,
                batch_size=batch_size, step_growth_gib=round(growth / 2**20, 3),
                rss_before_gib=round(before / 2**20, 3), step_seconds=round(seconds, 1),
                torch=torch.__version__, threads=torch.get_num_threads())


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.models[0], args.img_size, args.batch_size)), flush=True)
        return 0
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_='65536')
    records = []
    for spec in args.models:
        result = subprocess.run(
            [sys.executable, os.path.abspath(__file__), spec, '--child', '--img-size',
             str(args.img_size), '--batch-size', str(args.batch_size)],
            env=env, stdout=subprocess.PIPE, text=True)
        if result.returncode:
            print(f'{spec}: the measuring process failed (exit {result.returncode})',
                  file=sys.stderr)
            return 1
        record = json.loads(result.stdout.strip().splitlines()[-1])
        records.append(record)
        print(json.dumps(record), flush=True)
    for record in records[1:]:
        ratio = record['step_growth_gib'] / records[0]['step_growth_gib']
        print(f'{record["model"]} / {records[0]["model"]}: {ratio:.2f}x the step growth')
    return 0


if __name__ == '__main__':
    sys.exit(main())
