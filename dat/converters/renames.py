"""The machinery shared by the checkpoint converters: a table of renames, applied so that
every key is used once and every problem is reported with the key's name."""
import re
from typing import Callable, Dict, List, Optional, Pattern, Tuple

import torch

Tensor = torch.Tensor
#: (key pattern, our key template or None to drop the key, tensor transform or None).
Rule = Tuple[str, Optional[str], Optional[Callable[[Tensor], Tensor]]]


class ConversionError(ValueError):
    """The checkpoint does not fit the layout it is converted from."""


def squeeze_1x1(t: Tensor) -> Tensor:
    """A 1x1 conv weight (C_out, C_in, 1, 1) as a linear weight (C_out, C_in)."""
    return t.flatten(1) if t.dim() == 4 else t


def compile_rules(rules: List[Rule]) -> List[Tuple[Pattern, Optional[str], Optional[Callable]]]:
    return [(re.compile(p), t, f) for p, t, f in rules]


def apply_rules(key: str, compiled, layout: str) -> Tuple[Optional[str], Optional[Callable]]:
    """Our name for ``key`` (None for a dropped buffer) and its tensor transform.

    Templates are ``str.format`` strings over the pattern's named groups, plus ``{i1}``
    (stage ``i`` + 1, the stage a ``down_projs`` entry leads into), and ``{j2}`` and ``{n}``
    (block ``j // 2`` and norm ``j % 2 + 1`` of a ``layer_norms`` entry, two per block).

    Raises:
        ConversionError: if no rule matches the key.
    """
    for pattern, template, transform in compiled:
        match = pattern.match(key)
        if match is None:
            continue
        if template is None:
            return None, None
        fields = match.groupdict()
        if 'i' in fields:
            fields['i1'] = int(fields['i']) + 1
        if 'j' in fields:
            fields['j2'], fields['n'] = int(fields['j']) // 2, int(fields['j']) % 2 + 1
        return template.format(**fields), transform
    raise ConversionError(f'unknown key in the {layout} checkpoint: {key!r}')


def convert_state(state: Dict[str, Tensor], rename: Callable[[str], Tuple],
                  expected: Dict[str, torch.Size]) -> Dict[str, Tensor]:
    """Rename every key of ``state`` and check the result against ``expected`` shapes.

    Raises:
        ConversionError: naming every key that is unknown, used twice, missing or of the
            wrong shape.
    """
    converted, errors = {}, []
    for key, value in state.items():
        try:
            new_key, transform = rename(key)
        except ConversionError as err:
            errors.append(str(err))
            continue
        if new_key is None:
            continue
        value = transform(value) if transform else value
        if new_key in converted:
            errors.append(f'{key!r} maps to {new_key!r}, which another key already filled')
        elif new_key not in expected:
            errors.append(f'{key!r} maps to {new_key!r}, which the inferred architecture '
                          'does not have')
        elif value.shape != expected[new_key]:
            errors.append(f'{key!r} has shape {tuple(value.shape)}; {new_key!r} needs '
                          f'{tuple(expected[new_key])}')
        converted[new_key] = value
    errors += [f'the checkpoint has nothing for {key!r}' for key in expected
               if key not in converted]
    if errors:
        raise ConversionError('cannot convert this checkpoint:\n  ' + '\n  '.join(errors))
    return converted


def state_dict_of(checkpoint: Dict, key: str, layout: str) -> Dict[str, Tensor]:
    """``checkpoint[key]`` (or the checkpoint itself), checked to map names to tensors."""
    state = checkpoint.get(key, checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ConversionError(f'expected a {layout} checkpoint: {{"{key}": state_dict}}')
    return state


def read_stage(state: Dict[str, Tensor], stage: int, layout: str) -> Tuple[int, int, Dict]:
    """What the authors' layouts (2022 and DAT++ alike) say about stage ``stage``.

    Returns:
        tuple: ``(channels, depth, d_blocks)``; ``d_blocks`` maps the index of each D block
        (one with ``rpe_table``) to ``(heads, groups, table height)``.
    """
    prefix = f'stages.{stage}.'
    dim = need(state, prefix + 'layer_norms.0.norm.weight', layout).shape[0]
    depth = 1 + max((int(k.split('.')[3]) for k in state
                     if k.startswith(prefix + 'mlps.')), default=-1)
    if depth == 0:
        raise ConversionError(f'the {layout} checkpoint has no keys {prefix}mlps.*')
    d_blocks = {}
    for j in range(depth):
        attn = f'{prefix}attns.{j}.'
        if attn + 'rpe_table' in state:
            table = state[attn + 'rpe_table']
            group_channels = need(state, attn + 'conv_offset.0.weight', layout).shape[0]
            d_blocks[j] = (table.shape[0], dim // group_channels, table.shape[1])
    return dim, depth, d_blocks


def need(state: Dict[str, Tensor], key: str, layout: str) -> Tensor:
    """``state[key]``, or a ConversionError that names the key."""
    if key not in state:
        raise ConversionError(f'the {layout} checkpoint has no key {key!r}')
    return state[key]
