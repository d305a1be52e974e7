"""docs/backbone.md's table of the papers' symbols: every argument or constant it names
exists, and every value it gives for a released model is what dat builds.

The values are read off the layers of a skeleton of each released model: its arch and timm
arguments (``dat/families.py``) with one block of each kind per stage, built on the meta
device (no memory, no initialisation), and its stem and downsampling run on a meta input
of the release's evaluation size to get each stage's map. The values that the shapes of
the authors' checkpoint files show (heads, offset groups, kernels, tables, windows,
neighbourhoods) are checked against those files' key lists too.
"""
import importlib
import inspect
import re
from pathlib import Path

import pytest
import torch

from dat.families import FAMILIES
from dat.models import DAT, DATPlusPlus
from dat.models.backbones.dat import DATBlock
from dat.models.backbones.datpp import DATPlusPlusBlock
from dat.models.layers import (DeformableAttention, DeformableAttentionPlusPlus,
                               NeighborhoodAttention, WindowAttention)
from dat.models.layers.deformable_attention import OFFSET_RANGE_FACTOR

DOC = Path(__file__).resolve().parents[2] / 'docs' / 'backbone.md'
SECTION = "## The papers' symbols in the code"
#: The table's model columns: the timm name of each released model.
COLUMNS = {'DAT-T': 'dat_tiny', 'DAT-S': 'dat_small', 'DAT-B': 'dat_base',
           'DAT-B 384': 'dat_base_384', 'DAT-T++': 'datpp_tiny', 'DAT-S++': 'datpp_small',
           'DAT-B++': 'datpp_base', 'DAT-B++ 384': 'datpp_base_384'}
#: Rows whose value is one per model; the others have one per stage (or one for all stages).
SCALAR_ROWS = ('input', 'eval', 'stem', 's')
#: Short names of the third column.
NAMES = {cls.__name__: cls for cls in (DAT, DATPlusPlus, DATBlock, DATPlusPlusBlock,
                                       DeformableAttention, DeformableAttentionPlusPlus,
                                       NeighborhoodAttention, WindowAttention)}
NO_BLOCK = '–'


def symbol_table():
    """[{column: cell}] of the first table after the section heading."""
    lines = DOC.read_text().split(SECTION, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith('| Symbol |'))
    rows = []
    for line in lines[start:]:
        if not line.startswith('|'):
            break
        rows.append([cell.strip() for cell in line.strip().strip('|').split('|')])
    header, _, *body = rows
    assert all(len(row) == len(header) for row in body)
    return [dict(zip(header, row)) for row in body]


def resolve(name: str):
    """The object a dotted name stands for: a class of :data:`NAMES` and its attributes, or
    a module under ``dat.models`` or ``dat`` and its attributes."""
    parts = name.split('.')
    obj, rest = None, []
    if parts[0] in NAMES:
        obj, rest = NAMES[parts[0]], parts[1:]
    else:
        candidates = [(prefix + '.'.join(parts[:n]), parts[n:]) for prefix in ('dat.models.', '')
                      for n in range(len(parts), 0, -1)]
        for module, rest in candidates:
            try:
                obj = importlib.import_module(module)
                break
            except ImportError:
                continue
        assert obj is not None and obj.__name__.startswith('dat'), f'{name}: not in dat'
    for attr in rest:
        assert hasattr(obj, attr), f'{name}: {obj!r} has no {attr!r}'
        obj = getattr(obj, attr)
    return obj


def check_name(span: str):
    arch_key = re.fullmatch(r"arch\['(\w+)'\]", span)
    call = re.fullmatch(r'([\w.]+)\((\w+)\)', span)
    if arch_key:
        assert arch_key.group(1) in DAT.arch_keys and arch_key.group(1) in DATPlusPlus.arch_keys
    elif call:
        params = inspect.signature(resolve(call.group(1))).parameters
        assert call.group(2) in params, f'{span}: no argument {call.group(2)!r}'
    else:
        resolve(span)


def test_every_name_of_the_table_exists():
    spans = [span for row in symbol_table() for span in re.findall(r'`([^`]+)`', row['In dat'])]
    assert len(spans) >= 25
    for span in spans:
        check_name(span)


def test_a_misspelt_name_is_caught():
    """The check above fails on names that do not exist (arguments, constants, keys)."""
    for span in ('DeformableAttention(offset_range)', 'backbones.dat.KERNEL_SIZES',
                 "arch['heads']", 'layers.deformable_attention.OFFSET_RANGE'):
        with pytest.raises(AssertionError):
            check_name(span)


def released_models():
    return {model.name: (family, model) for family in FAMILIES.values()
            for model in family.timm_models}


def skeleton(family, model):
    """The model with one block of each of its kinds per stage, on the meta device."""
    cls = family.backbone
    arch = cls.parse_arch(model.arch)
    kinds = [''.join(dict.fromkeys(stage)) for stage in arch['block_types']]
    with torch.device('meta'):
        return cls(dict(arch, depths=[len(k) for k in kinds], block_types=kinds),
                   **model.kwargs)


def number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def built_values(family, model):
    """{symbol: value}, a string per model or a list of 4 (one per stage), as built."""
    net = skeleton(family, model)
    arch = family.backbone.parse_arch(model.arch)
    size = model.input_size
    x = net.patch_embed(torch.empty(1, 3, size, size, device='meta'))
    values = {'input': number(inspect.signature(family.backbone).parameters['img_size'].default
                              if 'img_size' not in model.kwargs else model.kwargs['img_size']),
              'eval': number(size), 'stem': number(size // x.shape[1]),
              'C': list(map(number, arch['embed_dims'])), 'N': list(map(number, arch['depths'])),
              'blocks': list(arch['block_types'])}
    per_stage = {key: [] for key in ('M', 'd', 'G', 'M/G', 'r', 'H_G x W_G', 'N_s', 'k', 'B',
                                     'w', 'K', 'mlp')}
    offsets = set()
    for stage in net.stages:
        if stage.downsample is not None:
            x = stage.downsample(x)
        height, width = x.shape[1:3]
        attns = [block.attn for block in stage.blocks]
        deform = next((a for a in attns if isinstance(a, DeformableAttention)), None)
        window = next((a for a in attns if isinstance(a, WindowAttention)), None)
        hood = next((a for a in attns if isinstance(a, NeighborhoodAttention)), None)
        block = stage.blocks[0]
        per_stage['M'].append(number(attns[0].num_heads))
        per_stage['d'].append(number(round(attns[0].scale ** -2)))
        per_stage['mlp'].append(number(block.mlp.fc1.out_features / block.mlp.fc1.in_features))
        per_stage['w'].append(number(window.window_size) if window else NO_BLOCK)
        per_stage['K'].append(number(hood.kernel_size) if hood else NO_BLOCK)
        if deform is None:
            for key in ('G', 'M/G', 'r', 'H_G x W_G', 'N_s', 'k', 'B'):
                per_stage[key].append(NO_BLOCK)
            continue
        conv = deform.offset.dwconv
        keys = conv(torch.empty(1, conv.in_channels, height, width, device='meta')).shape[2:]
        offsets.add(type(deform).move)
        per_stage['G'].append(number(deform.groups))
        per_stage['M/G'].append(number(deform.num_heads // deform.groups))
        per_stage['r'].append(number(conv.stride[0]))
        per_stage['H_G x W_G'].append(f'{keys[0]}x{keys[1]}')
        per_stage['N_s'].append(number(keys[0] * keys[1]))
        per_stage['k'].append(number(conv.kernel_size[0]))
        per_stage['B'].append('x'.join(map(str, deform.rpe_table.shape[1:])))
    (move, ) = offsets
    values['s'] = number(OFFSET_RANGE_FACTOR) if move is DeformableAttention.move else 'none'
    values.update(per_stage)
    return values


def documented(symbol: str, cell: str):
    if symbol in SCALAR_ROWS:
        return cell
    stages = cell.split(', ')
    if symbol == 'blocks':
        return [re.sub(r'\((\w+)\)x(\d+)', lambda m: m.group(1) * int(m.group(2)), s)
                for s in stages]
    return stages * 4 if len(stages) == 1 else stages


def test_the_table_has_a_column_for_each_released_model():
    header = list(symbol_table()[0])
    assert header[3:-1] == list(COLUMNS)
    assert sorted(COLUMNS.values()) == sorted(released_models())


@pytest.mark.parametrize('column', list(COLUMNS))
def test_values_are_those_of_the_released_model(column):
    family, model = released_models()[COLUMNS[column]]
    built = built_values(family, model)
    table = {row['Symbol']: documented(row['Symbol'], row[column]) for row in symbol_table()}
    assert table.keys() == built.keys()
    wrong = {symbol: (table[symbol], value) for symbol, value in built.items()
             if table[symbol] != value}
    assert not wrong, f'{column}: (documented, built): {wrong}'


def release_values(keys, dims):
    """{symbol: [one per stage]} from the tensors of a release file (its key list), for the
    symbols that its shapes show: M, G, k, B (D blocks), w (L, S) and K (N)."""
    values = {symbol: [NO_BLOCK] * 4 for symbol in ('G', 'k', 'B', 'w', 'K')}
    values['M'] = [NO_BLOCK] * 4
    for key, shape in keys.items():
        match = re.fullmatch(r'stages\.(\d)\.attns\.\d+\.(.+)', key)
        if not match:
            continue
        stage, name = int(match.group(1)), match.group(2)
        if name == 'rpe_table':
            values['M'][stage] = number(shape[0])
            values['B'][stage] = f'{shape[1]}x{shape[2]}'
        elif name == 'conv_offset.0.weight':  # depthwise: (C / G, 1, k, k)
            values['G'][stage] = number(dims[stage] // shape[0])
            values['k'][stage] = number(shape[-1])
        elif name == 'relative_position_bias_table':  # ((2w - 1)^2, M)
            values['w'][stage] = number((round(shape[0] ** 0.5) + 1) // 2)
            values['M'][stage] = number(shape[1])
        elif name == 'rpb':  # natten: (M, 2K - 1, 2K - 1)
            values['K'][stage] = number((shape[-1] + 1) // 2)
            values['M'][stage] = number(shape[0])
    return values


@pytest.mark.parametrize('column', list(COLUMNS))
def test_values_are_those_of_the_release_files(column, reference_dir, key_lists):
    """The heads, offset groups, offset kernels, table sizes, windows and neighbourhoods
    of the table against the shapes of the authors' checkpoint files (the key lists of
    tests/data/reference, read off the release files)."""
    family, model = released_models()[COLUMNS[column]]
    files = {}
    for tsv in ('dat2022_checkpoint_keys.tsv', 'datpp_checkpoint_keys.tsv'):
        files.update({name: keys for name, (_, keys) in key_lists(reference_dir / tsv).items()})
    name = re.sub(r'_in1k_(\d+)\.pth$', lambda m: '' if m.group(1) == '224' else '_384',
                  model.release)
    dims = family.backbone.parse_arch(model.arch)['embed_dims']
    release = release_values(files[name], dims)
    table = {row['Symbol']: documented(row['Symbol'], row[column]) for row in symbol_table()}
    wrong = {symbol: (table[symbol], value) for symbol, value in release.items()
             if table[symbol] != value}
    assert not wrong, f'{column} ({name}): (documented, release file): {wrong}'
