"""Read checkpoints without running their code, and load them into models strictly.

Every way this package reads weights goes through this module: the backbone's
``init_cfg=dict(type='Pretrained')``, the tools, the 2022 converter, and, through
:func:`load_from_local` (which :func:`dat.mmengine_patches.apply`, called by our tools,
registers as the loader of local files of mmengine's ``CheckpointLoader``), mmengine's
Runner (``load_from``, ``--resume``), ``mmpretrain.get_model(..., pretrained=FILE)`` and
the inferencers of mmpretrain, mmdet and mmseg.

What is read. Files are read with ``torch.load(weights_only=True)``: tensors, numbers,
strings and plain containers, and only these other types, by name (:data:`SAFE_GLOBALS`):

- what mmengine Runner checkpoints hold: mmengine's ``HistoryBuffer`` (with its built-in
  statistics methods) and numpy arrays, scalars and dtypes;
- what checkpoints of the 2022 training code hold besides tensors, as inert data: a yacs
  ``CfgNode`` is read as an ``OrderedDict`` (its attributes in ``__dict__``) and an argparse
  ``Namespace`` as a ``Namespace``; no code of theirs runs, and neither yacs nor the 2022
  code has to be installed.

Any other class or function in a file's pickle makes it refused with a
:class:`CheckpointError` that names them; nothing falls back to full unpickling. A file
that you trust fully but that is refused converts to a plain state dict with
:data:`CONVERT_COMMAND`, run where executing the file's code can do no harm.

How weights are matched: one function, :func:`check_fit`, decides whether weights fit a
model (the whole model, or with ``backbones_only`` the backbones in it), before anything is
loaded. :func:`load_weights` (the backbone's ``init_cfg=dict(type='Pretrained')``, the demo,
timm) calls it, and so do ``tools/train.py`` (``load_from``, ``--resume``), ``tools/test.py``
and :func:`dat.adapters.mmpretrain.get_model`. A ``prefix`` such as ``'backbone.'`` is
stripped when the checkpoint's keys carry it; layers adapt what they know how to adapt (the
attention layers resize their position tables, in ``adapt_state_dict``, which their own
``_load_from_state_dict`` calls too). When a model is initialised from a checkpoint of another
task (``pretrained=True``: the backbone's ``init_cfg``), keys that modules declare optional
(``optional_state_keys``, a regular expression over their own keys: the DAT backbone's
output norms ``norm{i}``) may be missing or extra, and are logged as skipped. Any other
missing, unexpected or mis-shaped key is a :class:`CheckpointError` that names the first of
them, unless a partial load is asked for: ``load_weights(..., strict=False)`` or
``init_cfg=dict(..., strict=False)``.

``nn.Module.load_state_dict`` keeps PyTorch's contract (``strict=False`` loads what fits and
returns the missing and unexpected keys, ``strict=True`` raises a ``RuntimeError``), and so
do mmengine's loaders, which load with ``strict=False`` and log what does not fit.
"""
import argparse
import os
import os.path as osp
import pickle
import re
import zipfile
from collections import OrderedDict
from typing import Any, Dict, FrozenSet, List, Mapping, NamedTuple, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
from mmengine.logging import HistoryBuffer, print_log
from mmengine.model import BaseTTAModel, is_model_wrapper
from mmengine.runner.checkpoint import CheckpointLoader

StateDict = Dict[str, torch.Tensor]

#: Shown by refusals: turns a file that you trust fully into a plain state dict.
CONVERT_COMMAND = (
    'python -c "import sys, torch; c = torch.load(sys.argv[1], map_location=\'cpu\', '
    'weights_only=False); torch.save({\'state_dict\': c.get(\'state_dict\', c.get(\'model\', '
    'c))}, sys.argv[2])" TRUSTED.pth PLAIN.pth')


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, is refused, or does not fit a model."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """No file at the checkpoint's path (a ``FileNotFoundError`` too, as mmengine's)."""


_NOT_ALLOWED = 'is not allowed in a checkpoint'


def _history_buffer_method(owner: Any, name: str) -> Any:
    """Stands in for ``builtins.getattr`` in a pickle, where mmengine's ``HistoryBuffer``
    stores its statistics methods by reference (``getattr(HistoryBuffer, 'mean')``): those
    four and nothing else."""
    if owner is HistoryBuffer and name in ('min', 'max', 'current', 'mean'):
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(f'getattr({owner!r}, {name!r}) {_NOT_ALLOWED}')


def _numpy_globals() -> List:
    core = np._core if hasattr(np, '_core') else np.core
    # BUILD of a dtype needs its class too (numpy.dtypes.Float64DType, ...)
    allowed = [np.ndarray, np.dtype] + sorted(
        {type(np.dtype(code)) for code in np.typecodes['All']}, key=lambda t: t.__name__)
    for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):  # numpy 1.x and 2.x
        allowed += [(core.multiarray._reconstruct, f'{module}._reconstruct'),
                    (core.multiarray.scalar, f'{module}.scalar')]
    return allowed


#: Everything besides tensors and plain data that a checkpoint may hold, by name.
SAFE_GLOBALS: List = [
    HistoryBuffer,
    (_history_buffer_method, 'builtins.getattr'),
    *_numpy_globals(),
    # the 2022 training code: read as inert data
    (OrderedDict, 'yacs.config.CfgNode'),
    argparse.Namespace,
]


def _refused_globals(path: str) -> Optional[List[str]]:
    """The classes and functions in ``path``'s pickle that are not allowed, or None if the
    pickle cannot be scanned."""
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # not a zip checkpoint, damaged, or an opcode the scanner refuses
        return None


def _first_line(err: BaseException) -> str:
    text = ' '.join(str(err).split()) or type(err).__name__
    if 'WeightsUnpickler error:' in text:  # torch's long preamble, then the reason
        text = text.split('WeightsUnpickler error:', 1)[1].split(' Check the doc')[0].strip()
    return text.split('. ')[0][:200]


_URL = re.compile(r'^[a-z][a-z0-9+.-]*://')


def read_checkpoint(path: Union[str, os.PathLike], map_location: Any = 'cpu',
                    mmap: bool = False) -> Any:
    """``torch.load`` of a local file that runs no code from it.

    ``mmap=True`` maps the tensors' storage instead of reading it (zip-format files).

    Raises:
        CheckpointError: one line that names the file and says why: no such file; not
            a readable checkpoint (truncated, damaged, random bytes); or refused, with the
            classes and functions its pickle would need.
    """
    path = os.fspath(path)
    if _URL.match(path):  # mmengine's loaders of URLs read with torch.load(weights_only=True)
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return CheckpointLoader.load_checkpoint(path, map_location)
    if not osp.isfile(path):
        raise CheckpointNotFoundError(f'{path}: no such checkpoint file')
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location=map_location, weights_only=True,
                              mmap=mmap and zipfile.is_zipfile(path))
    except Exception as err:
        refused = _refused_globals(path)
        if refused:
            need = (f'its pickle needs {", ".join(refused)}, which '
                    f'{"is" if len(refused) == 1 else "are"} not among the types a checkpoint '
                    'may hold here (tensors, numbers, containers, mmengine and numpy records)')
        elif 'add_safe_globals' in str(err) or _NOT_ALLOWED in str(err):
            need = f'its pickle does what a checkpoint may not do here: {_first_line(err)}'
        if refused or 'add_safe_globals' in str(err) or _NOT_ALLOWED in str(err):
            raise CheckpointError(
                f'{path}: refused: {need}; loading it could run code from the file. If you '
                'trust it fully, convert it where running its code can do no harm: '
                f'{CONVERT_COMMAND}') from None
        raise CheckpointError(f'{path}: cannot be read as a checkpoint: {_damage(path, err)}'
                              ) from None


def _damage(path: str, err: BaseException) -> str:
    """What is wrong with a file that ``torch.load`` could not read."""
    size = osp.getsize(path)
    with open(path, 'rb') as f:
        head = f.read(4)
    if head == b'PK\x03\x04' and not zipfile.is_zipfile(path):
        return (f'it is truncated or damaged ({size} bytes, and its zip archive has no end: '
                'an interrupted write or copy?)')
    if head == b'PK\x03\x04' or head[:1] == b'\x80':  # zip or legacy torch.save format
        return f'it is damaged ({size} bytes): {_first_line(err)}'
    return (f'it is not a PyTorch checkpoint ({size} bytes, neither the zip format of '
            'torch.save nor its legacy format)')


def load_from_local(filename: str, map_location: Any = None) -> Any:
    """A loader of local files for mmengine's ``CheckpointLoader`` (prefix ``''``, put in
    place by :func:`dat.mmengine_patches.apply`), through :func:`read_checkpoint`. Named
    ``load_from_*`` like mmengine's own loaders, whose log line prints the name after
    ``load_from_``."""
    return read_checkpoint(osp.expanduser(filename), map_location)


def split_checkpoint(checkpoint: Any, path: str = 'the checkpoint') -> Tuple[StateDict, Dict]:
    """The weights of a checkpoint and everything else it holds.

    Weights are under ``state_dict`` (mmengine), ``model`` (the 2022 release), or the
    checkpoint is a bare state dict.

    Returns:
        tuple: ``(state_dict, extras)``; ``extras`` is the rest of the checkpoint (mmengine:
        ``meta``, ``optimizer``, ...; 2022: ``config``, ``epoch``, ...).
    """
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(f'{path}: holds a {type(checkpoint).__name__}, not a state dict')
    state, extras = checkpoint, {}
    for key in ('state_dict', 'model'):
        if isinstance(checkpoint.get(key), Mapping):
            state = checkpoint[key]
            extras = {k: v for k, v in checkpoint.items() if k != key}
            break
    not_tensors = [k for k, v in state.items() if not torch.is_tensor(v)]
    if not_tensors:
        raise CheckpointError(f'{path}: not a state dict: {len(not_tensors)} entries are not '
                              f'tensors (first: {", ".join(map(str, not_tensors[:3]))})')
    return dict(state), extras


def read_state_dict(path: Union[str, os.PathLike], prefix: Optional[str] = None,
                    mmap: bool = False) -> Tuple[StateDict, Dict]:
    """Path in, weights and the rest of the checkpoint out (see :func:`split_checkpoint`);
    ``prefix`` is stripped as by :func:`strip_prefix`; ``mmap`` as in
    :func:`read_checkpoint`."""
    state, extras = split_checkpoint(read_checkpoint(path, mmap=mmap), os.fspath(path))
    return strip_prefix(state, prefix), extras


def strip_prefix(state: Mapping[str, torch.Tensor], prefix: Optional[str]) -> StateDict:
    """The keys that start with ``prefix``, without it; the state as it is when none does
    (so a bare backbone checkpoint loads where ``prefix='backbone.'`` is given). A
    ``module.`` prefix that every key carries (a DDP-wrapped model) is dropped first."""
    state = dict(state)
    if state and all(k.startswith('module.') for k in state):
        state = {k[len('module.'):]: v for k, v in state.items()}
    if prefix and any(k.startswith(prefix) for k in state):
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return state


class Misshaped(NamedTuple):
    """A key whose tensor has another shape in the checkpoint than in the model."""
    key: str
    checkpoint: Tuple[int, ...]
    model: Tuple[int, ...]

    def __str__(self) -> str:
        return f'{self.key} {self.checkpoint} vs {self.model}'


class Fit(NamedTuple):
    """How a state dict fits a model."""
    missing: List[str]  #: in the model, not in the checkpoint
    unexpected: List[str]  #: in the checkpoint, not in the model
    wrong_shape: List[Misshaped]  #: in both, with other shapes
    optional: FrozenSet[str]  #: those of missing / unexpected that modules declare optional

    def problems(self, pretrained: bool = False) -> List[Tuple[str, List[str]]]:
        """(description, keys) of what does not fit; with ``pretrained``, optional keys
        are allowed to be missing or extra."""
        def kept(keys):
            return [k for k in keys if not (pretrained and k in self.optional)]
        return [(name, keys) for name, keys in (
            ('mis-shaped, checkpoint vs model', self.wrong_shape),
            ('missing from the checkpoint', kept(self.missing)),
            ('in the checkpoint but not in the model', kept(self.unexpected))) if keys]

    def describe(self, pretrained: bool = False) -> str:
        """:meth:`problems` on one line, the first keys of each."""
        return '; '.join(f'{len(keys)} {name} (first: {_listed(keys)})'
                         for name, keys in self.problems(pretrained))


def _listed(keys: List, first: int = 5) -> str:
    more = f', ... ({len(keys)} in all)' if len(keys) > first else ''
    return ', '.join(map(str, keys[:first])) + more


def fit_state_dict(module: nn.Module, state: Dict[str, torch.Tensor], prefix: str = '') -> Fit:
    """Let ``module``'s layers adapt ``state`` in place (``adapt_state_dict``: e.g. resized
    position tables), then compare the keys under ``prefix`` with the module's own."""
    optional = []
    for name, sub in module.named_modules(prefix=prefix[:-1] if prefix else ''):
        sub_prefix = f'{name}.' if name else ''
        adapt = getattr(sub, 'adapt_state_dict', None)
        if adapt is not None:
            adapt(state, sub_prefix)
        pattern = getattr(sub, 'optional_state_keys', None)
        if pattern:
            optional.append((sub_prefix, re.compile(pattern)))

    own = module.state_dict(prefix=prefix)
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k.startswith(prefix) and k not in own]
    wrong = [Misshaped(k, tuple(state[k].shape), tuple(v.shape)) for k, v in own.items()
             if k in state and state[k].shape != v.shape]
    declared = frozenset(k for k in missing + unexpected if any(
        k.startswith(p) and r.match(k[len(p):]) for p, r in optional))
    return Fit(missing, unexpected, wrong, declared)


_PARTIAL_HINT = ('to load only what fits, use dat.models.checkpoint.load_weights(model, '
                 'FILE, strict=False) or init_cfg=dict(..., strict=False)')


def _prefix_hint(fit: Fit) -> str:
    """A hint naming the prefix that would make the checkpoint's extra keys fit, when
    stripping a leading ``'name.'`` turns some of them into the model's missing keys (a
    classifier's ``backbone.`` given to a backbone)."""
    missing = set(fit.missing)
    heads = {k.split('.', 1)[0] + '.' for k in fit.unexpected if '.' in k}
    for head in sorted(heads):
        if any(k[len(head):] in missing for k in fit.unexpected if k.startswith(head)):
            return f'; its keys under {head!r} would fit with prefix={head!r}'
    return ''


def _weights(source: Union[str, os.PathLike, Mapping[str, torch.Tensor]],
             prefix: Optional[str]) -> Tuple[str, StateDict]:
    """The name of ``source`` in messages, and its weights without ``prefix``."""
    if isinstance(source, Mapping):
        name = 'the state dict'
        return name, strip_prefix(split_checkpoint(source, name)[0], prefix)
    return os.fspath(source), read_state_dict(source, prefix, mmap=True)[0]


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside mmengine's wrappers (DDP, ...) and test-time augmentation models,
    whose keys a checkpoint holds."""
    while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        model = model.module
    return model


def backbones_of(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """The modules of ``model`` that a checkpoint must fit as a whole, by name: those that
    name themselves in fit errors (``weights_name()``: the DAT and DAT++ backbones)."""
    return [(name, module) for name, module in unwrap(model).named_modules()
            if callable(getattr(module, 'weights_name', None))]


def check_fit(model: nn.Module,
              source: Union[str, os.PathLike, Mapping[str, torch.Tensor]],
              prefix: Optional[str] = None,
              pretrained: bool = False,
              what: Optional[str] = None,
              backbones_only: bool = False) -> Tuple[StateDict, Fit]:
    """Whether the weights of ``source`` fit ``model``: the one check of this package.

    Layers adapt what they can first (resized position tables); with ``pretrained``, the
    keys that modules declare optional (the output norms) may be missing or extra. Any
    other missing, unexpected or mis-shaped key is refused. :func:`load_weights` (the
    backbone's ``init_cfg``, the demo, timm), ``tools/train.py`` (``load_from``,
    ``--resume``), ``tools/test.py`` and :func:`dat.adapters.mmpretrain.get_model` call it.

    Args:
        model (nn.Module): The model (mmengine's wrappers and TTA models are looked into).
        source (str | dict): A checkpoint path (its tensors are mapped, not read, by the
            checks alone) or a checkpoint / state dict.
        prefix (str, optional): Stripped from the keys (see :func:`strip_prefix`).
        pretrained (bool): Optional keys may be missing or extra. Default: False.
        what (str, optional): The model's name in the error. Default: its class name.
        backbones_only (bool): Check only the backbones inside ``model`` (see
            :func:`backbones_of`), each under its own name, for loaders that load the rest
            themselves with ``strict=False`` (mmengine's Runner, mmpretrain's
            ``get_model``). Default: False (the whole model).

    Returns:
        tuple: ``(state_dict, fit)``: the weights, adapted and without ``prefix``, and how
        they fit the whole model (the first backbone's fit with ``backbones_only``).

    Raises:
        CheckpointError: naming the file and the first keys that do not fit.
    """
    name, state = _weights(source, prefix)
    if not backbones_only:
        model = unwrap(model)
        fit = fit_state_dict(model, state)
        if fit.problems(pretrained):
            hint = _prefix_hint(fit)  # the prefix is named when given or when it is the cause
            where = f' (prefix {prefix or ""!r})' if prefix or hint else ''
            raise CheckpointError(
                f'{name}{where} does not fit the {what or type(model).__name__}: '
                f'{fit.describe(pretrained)}{hint}; {_PARTIAL_HINT}')
        return state, fit
    fits = []
    for key, backbone in backbones_of(model):
        fits.append(fit_state_dict(backbone, state, f'{key}.' if key else ''))
        if fits[-1].problems(pretrained):
            raise CheckpointError(f'the weights do not fit the {backbone.weights_name()}: '
                                  f'{fits[-1].describe(pretrained)}{_prefix_hint(fits[-1])}; '
                                  f'{_PARTIAL_HINT}')
    return state, fits[0] if fits else Fit([], [], [], frozenset())


class LoadReport(NamedTuple):
    loaded: int  #: tensors loaded
    fit: Fit


def load_weights(model: nn.Module,
                 source: Union[str, os.PathLike, Mapping[str, torch.Tensor]],
                 prefix: Optional[str] = None,
                 strict: bool = True,
                 pretrained: bool = False,
                 what: Optional[str] = None,
                 logger: Optional[str] = 'current') -> LoadReport:
    """Load a checkpoint file (or a state dict) into ``model``.

    Args:
        model (nn.Module): The model.
        source (str | dict): A checkpoint path (read by :func:`read_checkpoint`) or a
            checkpoint / state dict.
        prefix (str, optional): Stripped from the keys (see :func:`strip_prefix`),
            e.g. ``'backbone.'`` to load a classifier's backbone into a backbone.
        strict (bool): Refuse a checkpoint with missing, unexpected or mis-shaped keys.
            With False, load the keys that fit and log the others. Default: True.
        pretrained (bool): Initialising from a checkpoint made for another task: keys that
            modules declare optional (``optional_state_keys``: the DAT output norms) may
            be missing or extra, and are logged as skipped. Default: False (inference,
            fine-tuning, resuming: every key must fit).
        what (str, optional): The model's name in messages. Default: its class name.
        logger (str, optional): mmengine logger for what was loaded and skipped; None
            logs nothing.

    Raises:
        CheckpointError: naming the file and the first keys that do not fit.
    """
    model = unwrap(model)
    if strict:
        state, fit = check_fit(model, source, prefix, pretrained, what)
    else:
        state = _weights(source, prefix)[1]
        fit = fit_state_dict(model, state)
    name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else 'the state dict'
    wrong = [misfit.key for misfit in fit.wrong_shape]
    state = {k: v for k, v in state.items() if k not in wrong}
    model.load_state_dict(state, strict=False)
    report = LoadReport(sum(k not in fit.unexpected for k in state), fit)
    if logger is not None:
        print_log(f'loaded {report.loaded} tensors from {name}', logger=logger)
        if fit.missing:
            print_log('skipped, not in the checkpoint (kept their initial values): '
                      f'{", ".join(fit.missing)}', logger=logger)
        if wrong:
            print_log(f'skipped, mis-shaped (kept their initial values): {", ".join(wrong)}',
                      logger=logger)
        if fit.unexpected:
            print_log(f'skipped, not used by this model: {", ".join(fit.unexpected)}',
                      logger=logger)
    return report
