"""Export a DAT classifier, or a DAT backbone for dense tasks, to ONNX and check it.

    # classifier (config or model name): input (B, 3, H, W) normalised image -> logits
    python tools/deployment/pytorch2onnx.py configs/dat/dat-tiny_8xb128-amp_in1k.py \
        dat-tiny.pth --shape 224 224 --out dat-tiny.onnx
    # backbone alone (any task config), one output per stage in out_indices: feat0 .. feat3
    python tools/deployment/pytorch2onnx.py configs/upernet/CONFIG.py CKPT \
        --shape 512 512 --out dat-backbone.onnx --backbone

The graph is exported with torch's default ONNX exporter (``torch.onnx.export(...,
dynamo=True)``, which captures the model with ``torch.export`` and translates it with
``onnxscript``) at opset 18, then run with onnxruntime on a random input; the tool prints the
largest absolute difference from PyTorch on each output and fails if it is above 1e-4. The
input is the normalised image, as the data preprocessor makes it (mean/std are printed).

Input size: without ``--dynamic`` the graph is for ``--shape`` at batch 1. ``--dynamic``
makes the batch size, height and width free ``torch.export.Dim``s (the model is captured at
batch 2; the window, neighbourhood and deformable blocks pad and mask whatever the size is),
and checks the graph at three inputs: ``--shape`` at batch 1, then at batch 2 the
``--check-shape`` sizes (by default H+32 x W+64 and H+13 x W+7, which is not a multiple of
32); it fails with a clear message if any differs from PyTorch.

``--legacy`` uses torch's deprecated TorchScript exporter instead (``dynamo=False``, opset
17 by default), only for runtimes that cannot read opset 18; torch will remove it.

Without a checkpoint the model keeps random weights (seed 0), enough to try the export.
"""
import argparse
import contextlib
import os.path as osp
import sys
import warnings
from typing import List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from dat.adapters.builder import TensorMode
from dat.cli import data_preprocessor, fail
from dat.cli import load_config as load_config_file

#: Default opsets: torch's exporter writes opset 18 and later; the TorchScript one (--legacy)
#: 16 and later (GridSample).
OPSET, LEGACY_OPSET = 18, 17
ATOL = 1e-4
#: The smallest side of the inputs of a graph exported with --dynamic.
MIN_DYNAMIC_SIDE = 64


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Export DAT to ONNX and check it with '
                                     'onnxruntime')
    parser.add_argument('config', help='config file, or a classification model name')
    parser.add_argument('checkpoint', nargs='?', default=None,
                        help='checkpoint file (random weights if omitted)')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'), default=[224, 224],
                        help='input height and width (default: 224 224)')
    parser.add_argument('--out', required=True, help='output .onnx file')
    parser.add_argument('--backbone', action='store_true',
                        help='export the backbone alone (for detection / segmentation)')
    parser.add_argument('--dynamic', action='store_true',
                        help='dynamic batch size, height and width (checked at 3 sizes)')
    parser.add_argument('--check-shape', type=int, nargs=2, action='append',
                        metavar=('H', 'W'), help='with --dynamic: another input size to '
                        'check at batch 2 (repeatable; default: H+32 W+64 and H+13 W+7)')
    parser.add_argument('--opset', type=int, default=None,
                        help=f'ONNX opset (default: {OPSET}; with --legacy {LEGACY_OPSET}, '
                        'at least 16)')
    parser.add_argument('--legacy', action='store_true',
                        help="torch's deprecated TorchScript exporter (dynamo=False), only for "
                        'runtimes that need an opset below 18; torch will remove it')
    return parser.parse_args(argv)


def load_config(config: str):
    if osp.isfile(config) or config.endswith('.py'):
        return load_config_file(config)
    from mmpretrain.apis import ModelHub

    import dat.adapters.mmpretrain  # noqa: F401  (registers the DAT model names)
    try:
        return ModelHub.get(config).config
    except ValueError:
        fail(f'{config} is neither a config file nor a model name '
             "(see mmpretrain.list_models('dat*'))")


def build(cfg, checkpoint: Optional[str], backbone: bool):
    """The module to export and the names of its outputs."""
    from dat.families import build_backbone
    from dat.models.checkpoint import load_weights

    torch.manual_seed(0)
    try:
        if backbone:
            model = build_backbone(cfg.model.backbone.to_dict())
            if checkpoint:
                load_weights(model, checkpoint, prefix='backbone.',
                             what='DAT backbone of the config', logger=None)
            return model.eval(), [f'feat{i}' for i in model.out_indices]

        scope = cfg.get('default_scope', 'mmpretrain')
        if scope != 'mmpretrain':
            fail(f'the config is a {scope} config: whole detectors / segmentors are not '
                 'exported by this tool; pass --backbone to export the DAT backbone alone')
        from mmpretrain.apis import get_model
        model = get_model(cfg, pretrained=False)
        if checkpoint:
            load_weights(model, checkpoint, what='classifier of the config', logger=None)
    except ValueError as err:  # CheckpointError is one
        fail(str(err))
    return TensorMode(model).eval(), ['logits']  # normalised image -> logits


@contextlib.contextmanager
def exporter_warnings_off(*categories):
    """The exporters' deprecation and user warnings (and ``categories``) off: this tool
    checks the graph itself and prints the result."""
    with warnings.catch_warnings():
        for category in (DeprecationWarning, UserWarning, *categories):
            warnings.filterwarnings('ignore', category=category)
        yield


def export(module: nn.Module, x: torch.Tensor, out: str, output_names: List[str],
           opset: int, dynamic: bool, legacy: bool = False):
    if legacy:
        return export_legacy(module, x, out, output_names, opset, dynamic)
    from torch.export import Dim
    dynamic_shapes = None
    if dynamic:
        # Free batch, height and width, sides from 64 px (below, a stage would be 1 pixel
        # high or wide, which the exported graph does not cover).
        side = dict(min=MIN_DYNAMIC_SIDE)
        dynamic_shapes = ({0: Dim('batch', min=1, max=1024), 2: Dim('height', **side),
                           3: Dim('width', **side)}, )
    with exporter_warnings_off():
        program = torch.onnx.export(module, (x, ), dynamo=True, opset_version=opset,
                                    input_names=['input'], output_names=output_names,
                                    dynamic_shapes=dynamic_shapes, verbose=False)
    program.save(out, external_data=False)


def export_legacy(module: nn.Module, x: torch.Tensor, out: str, output_names: List[str],
                  opset: int, dynamic: bool):
    """torch's TorchScript exporter (deprecated): traced, the layers pad and mask for any
    size too."""
    dynamic_axes = None
    if dynamic:
        spatial = {0: 'batch', 2: 'height', 3: 'width'}
        dynamic_axes = {name: ({0: 'batch'} if name == 'logits' else spatial)
                        for name in output_names}
        dynamic_axes['input'] = spatial
    with exporter_warnings_off(torch.jit.TracerWarning):
        torch.onnx.export(module, (x[:1], ), out, opset_version=opset, dynamo=False,
                          input_names=['input'], output_names=output_names,
                          dynamic_axes=dynamic_axes, do_constant_folding=True)


def max_differences(session, module: nn.Module, x: torch.Tensor) -> List[float]:
    """Largest |onnxruntime - PyTorch| per output."""
    got = session.run(None, {'input': x.numpy()})
    with torch.no_grad():
        expected = module(x)
    expected = expected if isinstance(expected, (tuple, list)) else [expected]
    if len(got) != len(expected):
        raise ValueError(f'{len(got)} ONNX outputs for {len(expected)} PyTorch ones')
    diffs = []
    for a, b in zip(got, expected):
        if a.shape != tuple(b.shape):
            raise ValueError(f'output shape {a.shape} != PyTorch {tuple(b.shape)}')
        diffs.append(float(np.abs(a - b.numpy()).max()))
    return diffs


def main(argv: Optional[Sequence[str]] = None):
    args = parse_args(argv)
    import onnx
    import onnxruntime as ort

    if args.opset is None:
        args.opset = LEGACY_OPSET if args.legacy else OPSET
    if args.opset < 16:
        fail(f'--opset {args.opset} has no GridSample (the D blocks need opset >= 16)')
    if args.opset < 18 and not args.legacy:
        fail(f"--opset {args.opset}: torch's exporter writes opset 18 and later; pass "
             '--legacy for the TorchScript exporter (opset 16 and 17)')
    cfg = load_config(args.config)
    module, output_names = build(cfg, args.checkpoint, args.backbone)
    height, width = args.shape
    x = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(0))
    if args.check_shape and not args.dynamic:
        fail('--check-shape checks a graph exported with --dynamic; add --dynamic')
    for name, (h, w) in [('--shape', args.shape)] + [('--check-shape', s)
                                                     for s in args.check_shape or []]:
        if args.dynamic and not args.legacy and min(h, w) < MIN_DYNAMIC_SIDE:
            fail(f'{name} {h} {w}: a graph exported with --dynamic takes sides from '
                 f'{MIN_DYNAMIC_SIDE} px (below, a stage would be 1 pixel high or wide)')
        try:
            with torch.no_grad():
                module(torch.zeros(1, 3, h, w))
        except ValueError as err:
            fail(f'{name} {h} {w}: {err}')

    # torch.export takes batch 1 for a constant: a dynamic graph is captured at batch 2.
    example = torch.cat([x, x.flip(-1)]) if args.dynamic else x
    export(module, example, args.out, output_names, args.opset, args.dynamic, args.legacy)
    onnx.checker.check_model(args.out)
    options = ort.SessionOptions()
    options.log_severity_level = 3  # failures are reported below, not logged twice
    session = ort.InferenceSession(args.out, options, providers=['CPUExecutionProvider'])
    preprocessor = data_preprocessor(cfg)
    print(f'exported {args.out} (opset {args.opset}): input (1, 3, {height}, {width}) '
          f'normalised with mean={preprocessor.get("mean")} std={preprocessor.get("std")}; '
          f'outputs {output_names}')
    diffs = max_differences(session, module, x)
    for name, diff in zip(output_names, diffs):
        print(f'{name}: max |onnxruntime - pytorch| = {diff:.3e}')
    if max(diffs) > ATOL:
        fail(f'onnxruntime differs from PyTorch by {max(diffs):.3e} > {ATOL}')

    if args.dynamic:
        shapes = args.check_shape or [[height + 32, width + 64], [height + 13, width + 7]]
        for seed, (h, w) in enumerate(shapes, 1):
            other = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(seed))
            try:
                diff, reason = max(max_differences(session, module, other)), ''
            except Exception as err:  # onnxruntime errors have no common base class
                diff, reason = None, str(err).splitlines()[0][:200]
            if diff is None or diff > ATOL:
                why = reason if diff is None else f'max difference {diff:.3e}'
                fail(f'the graph exported with --dynamic does not hold at input (2, 3, {h}, '
                     f'{w}) ({why}); export without --dynamic (batch 1, --shape only)')
            print(f'dynamic: input (2, 3, {h}, {w}): max |onnxruntime - pytorch| = {diff:.3e}')


if __name__ == '__main__':
    main(sys.argv[1:])
