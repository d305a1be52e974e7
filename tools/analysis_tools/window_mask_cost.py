"""What the window masks cost: building one per call (as mmpretrain's Swin does) vs caching.

    python tools/analysis_tools/window_mask_cost.py                       # DAT-T, CPU or GPU
    python tools/analysis_tools/window_mask_cost.py --sizes 512x512 800x1216 --batch-size 2

For every distinct window mask that one forward of DAT-T asks for (L and S blocks of stages
1-2, L blocks of stages 3-4), at each input size, it prints a markdown row: the time to build
the mask, the time of a cache hit, the time of one window layer of that stage (forward, and
forward + backward, at ``--batch-size``, reference path, the mask cached), and the mask's
size. The last rows sum over the backbone: all masks built once per forward vs the forward
and backward of the backbone's window layers. Times are medians over ``--repeats`` runs
after one warm-up (device synchronised on CUDA).
"""
import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))

from dat.models import DAT  # noqa: E402
from dat.models.backbones.dat import PATCH_SIZE  # noqa: E402
from dat.models.layers import WindowAttention  # noqa: E402
from dat.models.layers import window_attention  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(
        description='Window masks: build per call vs cache',
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument('--sizes', nargs='+', default=['512x512', '800x1216'],
                        help='input sizes HxW (default: 512x512 800x1216)')
    parser.add_argument('--batch-size', type=int, default=2)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--device', default=None, help='default: cuda if available')
    args = parser.parse_args()
    args.device = torch.device(args.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    args.sizes = [tuple(int(v) for v in s.lower().split('x')) for s in args.sizes]
    return args


def timed(fn, args) -> float:
    """Median seconds of ``fn()``."""
    def sync():
        if args.device.type == 'cuda':
            torch.cuda.synchronize(args.device)
    fn()
    times = []
    for _ in range(args.repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    args = parse_args()
    torch.manual_seed(0)
    model = DAT('tiny', attn_impl='reference').to(args.device)
    print(f'device: {args.device}, torch {torch.__version__}, DAT-T window layers, batch '
          f'{args.batch_size}, median of {args.repeats}')
    print('\n| input | stage, block | map | mask MiB | build ms | cache hit us | '
          'layer fwd ms | layer fwd+bwd ms |\n|---|---|---|---|---|---|---|---|')
    for height, width in args.sizes:
        total_build = total_layers = 0.0
        seen = set()
        for i, stage in enumerate(model.stages):
            h, w = height // PATCH_SIZE // 2 ** i, width // PATCH_SIZE // 2 ** i
            for block in stage.blocks:
                attn = block.attn
                if not isinstance(attn, WindowAttention):
                    continue
                win, shift = attn.window_size, attn.shift_size
                x = torch.randn(args.batch_size, h, w, attn.qkv.in_features,
                                device=args.device, requires_grad=True)

                def forward_backward():
                    attn(x).sum().backward()
                layer_fwd = timed(lambda: attn(x.detach()), args)
                layer_fb = timed(forward_backward, args)
                total_layers += layer_fb
                if (h, w, win, shift) in seen:  # an earlier layer's mask: shared
                    continue
                seen.add((h, w, win, shift))
                mask = window_attention.build_window_mask(h, w, win, shift, args.device)
                build = timed(lambda: window_attention.build_window_mask(
                    h, w, win, shift, args.device), args)
                total_build += build
                hit = timed(lambda: attn.attention_mask(h, w, args.device), args)
                mib = 0 if mask is None else mask.numel() * mask.element_size() / 2**20
                print(f'| {height}x{width} | {i + 1}, {"S" if shift else "L"} | {h}x{w} | '
                      f'{mib:.2f} | {build * 1e3:.2f} | {hit * 1e6:.1f} | '
                      f'{layer_fwd * 1e3:.1f} | {layer_fb * 1e3:.1f} |')
        print(f'| {height}x{width} | all masks built once vs all window layers fwd+bwd | | | '
              f'{total_build * 1e3:.2f} | | | {total_layers * 1e3:.1f} |')


if __name__ == '__main__':
    main()
