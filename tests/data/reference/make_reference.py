"""Regenerate the golden reference data of tests/data/reference from the authors' code.

Needs two checkouts of https://github.com/LeapLabTHU/DAT (see README.md in this folder):

- the 2022 code (DAT, CVPR 2022), commit 566a593daf96efc3df58a1542e60b847b8b6f4ff;
- the DAT++ code, commit 32173fcf10d71abe73267f4e99829cd8624b7ab6 (its ``models/nat.py``
  imports natten 0.14's ``natten.functional``; build natten 0.14.6 for the CPU first).

and prints, for each file, whether the regenerated one is bit-identical to the one here
(the default; for outputs that differ, the largest difference, e.g. from
another torch version or CPU) or writes them (``--write``)::

    python tests/data/reference/make_reference.py --dat2022 DAT-2022 --datpp DAT-PP [--write]

Without ``--datpp`` only the 2022 files are made. The authors' code is imported from the
checkouts and nothing of this package is used, so the files say what the authors' code
computes. Everything runs on the CPU in float32; the mini models' weights come from fixed
seeds (below), the inputs from ``torch.randn`` with fixed seeds.
"""
import argparse
import importlib
import json
import math
import sys
import warnings
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
COMMIT_2022 = '566a593daf96efc3df58a1542e60b847b8b6f4ff'
COMMIT_DATPP = '32173fcf10d71abe73267f4e99829cd8624b7ab6'

#: Position tables of the attention layers (their initial values are ~0, so they are drawn
#: larger, for the tests to see them).
TABLES = ('relative_position_bias_table', 'rpe_table', 'rpb')

#: The mini 2022 model: every block kind (L, S, D) and position tables, at 64 x 64.
MINI_2022 = dict(
    img_size=64, patch_size=4, num_classes=10, expansion=4, dim_stem=32,
    dims=[32, 64, 128, 256], depths=[2, 2, 2, 2],
    stage_spec=[['L', 'S'], ['L', 'S'], ['L', 'D'], ['L', 'D']], heads=[1, 2, 4, 8],
    window_sizes=[4, 4, 4, 2], groups=[-1, -1, 2, 4], use_pes=[False, False, True, True],
    dwc_pes=[False] * 4, strides=[-1, -1, 1, 1], sr_ratios=[-1] * 4,
    offset_range_factor=[-1, -1, 2, 2], no_offs=[False] * 4, fixed_pes=[False] * 4,
    use_dwc_mlps=[False] * 4, use_conv_patches=False, drop_rate=0.0, attn_drop_rate=0.0,
    drop_path_rate=0.0)
SEED_2022 = 2022  #: torch.manual_seed before the model is built
INPUT_SEED_2022 = 7  #: input: torch.manual_seed(7); torch.randn(2, 3, 64, 64)

#: The mini DAT++ model: N and D blocks in every stage, strided D blocks, conv stem,
#: LPU and conv MLPs, as the released DAT++ models.
MINI_DATPP = dict(
    img_size=224, patch_size=4, num_classes=10, expansion=4, dim_stem=16,
    dims=[16, 32, 64, 128], depths=[2, 2, 2, 2],
    stage_spec=[['N', 'D'], ['N', 'D'], ['N', 'D'], ['D', 'D']], heads=[1, 2, 4, 8],
    window_sizes=[7, 7, 7, 7], groups=[1, 1, 2, 4], use_pes=[True] * 4,
    dwc_pes=[False] * 4, strides=[8, 4, 2, 1], offset_range_factor=[-1] * 4,
    no_offs=[False] * 4, fixed_pes=[False] * 4, use_dwc_mlps=[True] * 4, use_lpus=[True] * 4,
    use_conv_patches=True, ksizes=[9, 7, 5, 3], nat_ksizes=[7, 7, 7, 7], drop_rate=0.0,
    attn_drop_rate=0.0, drop_path_rate=0.0)
SEED_DATPP = 2024  #: torch.manual_seed after the model is built, before the draws below
#: name: (input seed, shape): 224 x 224, an odd size (200 x 264) and a small one (96 x 128)
INPUTS_DATPP = {'224': (3, (2, 3, 224, 224)), 'odd': (3, (1, 3, 200, 264)),
                'small': (5, (1, 3, 96, 128))}

#: The released models whose checkpoint keys are listed: name in the key lists -> the
#: authors' config (configs/NAME.yaml in the checkout of that code).
RELEASED_2022 = ('dat_tiny', 'dat_small', 'dat_base', 'dat_base_384')
RELEASED_DATPP = {'dat_pp_tiny': 'dat_tiny', 'dat_pp_small': 'dat_small',
                  'dat_pp_base': 'dat_base', 'dat_pp_base_384': 'dat_base_384'}


def import_authors(checkout: Path):
    """The ``models.dat`` module of a checkout of the authors' code (a fresh import)."""
    for name in [m for m in sys.modules if m == 'models' or m.startswith('models.')]:
        del sys.modules[name]
    sys.path.insert(0, str(checkout))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            return importlib.import_module('models.dat')
    finally:
        sys.path.remove(str(checkout))


def authors_config(checkout: Path, name: str) -> dict:
    """``MODEL.DAT`` of the authors' configs/NAME.yaml."""
    import yaml
    return yaml.safe_load((checkout / 'configs' / f'{name}.yaml').read_text())['MODEL']['DAT']


def key_list(model: torch.nn.Module) -> list:
    return [f'{k}\t{tuple(v.shape)}\t{str(v.dtype).replace("torch.", "")}'
            for k, v in model.state_dict().items()]


def key_lists_2022(dat) -> str:
    lines = []
    for name in RELEASED_2022:
        model = dat.DAT(**authors_config(dat.checkout, name))
        params = sum(p.numel() for p in model.parameters())
        lines.append(f'# {name}: {params} parameters, {len(model.state_dict())} entries '
                     '(checkpoint file holds {"model": state_dict})')
        lines += key_list(model)
    return '\n'.join(lines) + '\n'


def key_lists_datpp(dat) -> str:
    lines = []
    for name, config in RELEASED_DATPP.items():
        model = dat.DAT(**authors_config(dat.checkout, config))
        params = sum(p.numel() for p in model.parameters())
        lines.append(f'# {name}: {{"model": state_dict}}, {params} parameters')
        lines += key_list(model)
    return '\n'.join(lines) + '\n'


def record_deformable(model, kind):
    """Forward hooks that keep (positions, references) of each deformable layer: the 2022
    and DAT++ layers return ``(y, positions, references)``, (B, G, Hk, Wk, 2) each."""
    seen, handles = {}, []
    for name, module in model.named_modules():
        if isinstance(module, kind):
            handles.append(module.register_forward_hook(
                lambda m, args, out, name=name: seen.__setitem__(name, (out[1], out[2]))))
    return seen, handles


def golden_2022(dat):
    torch.manual_seed(SEED_2022)
    model = dat.DAT(**MINI_2022)
    with torch.no_grad():  # tables and the last offset conv drawn larger
        for name, p in model.named_parameters():
            if name.endswith(TABLES):
                p.copy_(torch.randn_like(p) * 0.5)
            elif name.endswith('conv_offset.3.weight'):
                p.copy_(torch.randn_like(p) * 0.2)
    model.eval()
    torch.manual_seed(INPUT_SEED_2022)
    x = torch.randn(2, 3, 64, 64)
    seen, _ = record_deformable(model, dat.DAttentionBaseline)
    with torch.no_grad():
        logits = model(x)[0]
    key = {name: 'stage{}.block{}'.format(*name.split('.')[1::2]) for name in seen}
    io_ = {'input': x, 'logits': logits,
           'sampling_positions': {key[n]: pos for n, (pos, _) in seen.items()},
           'reference_points': {key[n]: ref for n, (_, ref) in seen.items()}}
    return {'model': model.state_dict()}, io_, MINI_2022


def golden_datpp(dat):
    model = dat.DAT(**MINI_DATPP)
    torch.manual_seed(SEED_DATPP)
    with torch.no_grad():  # every tensor drawn: weights ~ N(0, 1/fan_in), norms ~ 1
        for name, p in model.named_parameters():
            r = torch.randn_like(p)
            if name.endswith(TABLES):
                p.copy_(r * 0.5)
            elif name.endswith('conv_offset.3.weight'):
                p.copy_(r * 0.3)
            elif p.dim() == 1 and name.endswith('weight') and 'norm' in name:
                p.copy_(1 + 0.1 * r)
            else:
                p.copy_(r / math.sqrt(p.numel() if p.dim() == 1 else p[0].numel()))
    model.eval()
    seen, _ = record_deformable(model, dat.DAttentionBaseline)
    io_ = {}
    for size, (seed, shape) in INPUTS_DATPP.items():
        torch.manual_seed(seed)
        x = torch.randn(shape)
        seen.clear()
        with torch.no_grad():
            logits = model(x)[0]
        io_[size] = {'input': x, 'logits': logits,
                     'deform': {n: {'positions': pos, 'references': ref}
                                for n, (pos, ref) in seen.items()}}
    return {'model': model.state_dict()}, io_, MINI_DATPP


def identical(a, b) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(
            identical(a[k], b[k]) for k in a)
    if torch.is_tensor(a):
        return torch.is_tensor(b) and a.dtype == b.dtype and torch.equal(a, b)
    return a == b


def max_difference(a, b) -> float:
    """The largest absolute difference between the tensors of two nests of the same
    structure (inf if the structures differ)."""
    if isinstance(a, dict):
        if not isinstance(b, dict) or list(a) != list(b):
            return math.inf
        return max((max_difference(a[k], b[k]) for k in a), default=0.0)
    if torch.is_tensor(a):
        if not torch.is_tensor(b) or a.shape != b.shape:
            return math.inf
        return float((a.double() - b.double()).abs().max()) if a.numel() else 0.0
    return 0.0 if a == b else math.inf


def emit(name: str, value, out: Path, write: bool) -> bool:
    """Write ``value`` to ``out/name`` or compare it with the file there."""
    path = out / name
    if name.endswith('.pth'):
        if write:
            torch.save(value, path)
        same = path.is_file() and identical(value, torch.load(path, weights_only=True))
    else:
        text = json.dumps(value, indent=1) if name.endswith('.json') else value
        if write:
            path.write_text(text)
        same = path.is_file() and (json.loads(path.read_text()) == value
                                   if name.endswith('.json') else path.read_text() == text)
    status = 'written' if write else 'identical' if same else 'DIFFERS'
    if not (write or same) and name.endswith('.pth') and path.is_file():
        stored = torch.load(path, weights_only=True)
        status += f' (largest difference {max_difference(value, stored):.2g})'
    print(f'{name}: {status}')
    return same


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--dat2022', type=Path, required=True,
                        help=f'checkout of LeapLabTHU/DAT at {COMMIT_2022[:7]}')
    parser.add_argument('--datpp', type=Path,
                        help=f'checkout of LeapLabTHU/DAT at {COMMIT_DATPP[:7]}')
    parser.add_argument('--out', type=Path, default=HERE)
    parser.add_argument('--write', action='store_true', help='write instead of comparing')
    args = parser.parse_args(argv)
    jobs = [(args.dat2022, golden_2022, key_lists_2022,
             ('golden_mini_dat2022.pth', 'golden_mini_io.pth', 'golden_mini_config.json',
              'dat2022_checkpoint_keys.tsv'))]
    if args.datpp:
        jobs.append((args.datpp, golden_datpp, key_lists_datpp,
                     ('golden_mini_datpp.pth', 'golden_mini_datpp_io.pth',
                      'golden_mini_datpp_config.json', 'datpp_checkpoint_keys.tsv')))
    ok = True
    for checkout, golden, key_lists, names in jobs:
        dat = import_authors(checkout)
        dat.checkout = checkout
        model, io_, config = golden(dat)
        for name, data in zip(names, (model, io_, config, key_lists(dat))):
            ok &= emit(name, data, args.out, args.write)
    return 0 if ok or args.write else 1


if __name__ == '__main__':
    sys.exit(main())
