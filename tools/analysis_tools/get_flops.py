"""Count the parameters and FLOPs of a model built from a config.

    python tools/analysis_tools/get_flops.py configs/dat/dat-tiny_8xb128-amp_in1k.py
    python tools/analysis_tools/get_flops.py CONFIG --shape 800 1216

FLOPs follow the fvcore convention that the DAT paper uses (mmengine's FlopAnalyzer is
fvcore's): one multiply-add is one FLOP; matrix products, convolutions, norms, pooling and
bilinear sampling are counted; element-wise operators (add, softmax, GELU, ...) are not.
It prints the split by operator and names every operator that it did not count.
"""
import argparse
from collections import Counter

import torch
import torch.nn as nn
from mmengine.analysis import FlopAnalyzer
from mmengine.config import DictAction

from dat.adapters.builder import TensorMode, build_model_from_config
from dat.cli import fail, load_config


def parse_args():
    parser = argparse.ArgumentParser(description='Count parameters and FLOPs')
    parser.add_argument('config', help='config file')
    parser.add_argument('--shape', type=int, nargs='+', default=None,
                        help='input size: H W, or one number for a square (default: the '
                        "config's test size, else 224)")
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of the config, as in tools/train.py')
    return parser.parse_args()


def count(model: nn.Module, shape):
    """For one (1, 3, H, W) input: (params, flops, {operator: flops},
    {uncounted operator: calls})."""
    model.eval()
    analyzer = FlopAnalyzer(TensorMode(model), (torch.rand(1, 3, *shape), ))
    analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    params = sum(p.numel() for p in model.parameters())
    return (params, analyzer.total(), dict(analyzer.by_operator()),
            Counter(analyzer.unsupported_ops()))


def main():
    args = parse_args()
    cfg = load_config(args.config, args.cfg_options)
    if args.shape is None:
        size = cfg.model.get('backbone', {}).get('img_size', 224)
        shape = (size, size) if isinstance(size, int) else tuple(size)
    elif len(args.shape) in (1, 2):
        shape = tuple(args.shape) * (3 - len(args.shape))
    else:
        fail('--shape takes H W or a single size')
    model = build_model_from_config(cfg)
    with torch.no_grad():
        params, flops, by_operator, skipped = count(model, shape)
    print(f'config: {args.config}')
    print(f'input shape: (1, 3, {shape[0]}, {shape[1]})')
    print(f'params: {params:,} ({params / 1e6:.2f} M)')
    print(f'flops: {flops:,} ({flops / 1e9:.2f} G)')
    print('by operator: ' + ', '.join(f'{op} {n / 1e9:.3f} G'
                                      for op, n in sorted(by_operator.items())))
    if skipped:
        print('not counted: ' + ', '.join(f'{op} x{n}' for op, n in sorted(skipped.items())))


if __name__ == '__main__':
    main()
