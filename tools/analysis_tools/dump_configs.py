"""Write every config's resolved settings to JSON, and compare two such dumps.

    python tools/analysis_tools/dump_configs.py --out before.json [--param-groups]
    ... restructure the configs ...
    python tools/analysis_tools/dump_configs.py --out after.json [--param-groups]
    python tools/analysis_tools/dump_configs.py --compare before.json after.json \
        [--rename OLD_NAME=NEW_NAME ...]

A dump holds, for each config under ``configs/`` (bases excluded) or each CONFIG given, the
resolved values of the keys that mmengine's Runner and our tools read (:data:`RUNNER_KEYS`:
the model, optimizer, schedulers, data loaders with their pipelines, loops, hooks, ...);
helper variables of the config files (``base_lr``, ``crop_size``, ...) are left out.
``--param-groups`` adds, per config, the learning rate and weight decay that the optimizer
gives each parameter (the model is built on the ``meta`` device, so no memory is used):
the rules in ``paramwise_cfg`` and in an optimizer wrapper constructor are then compared by
what they do, not by how they are written.

``--compare`` prints every difference (``config: key.path: before -> after``) and exits with
status 1 if there is one; ``_scope_`` keys that name the config's own default scope are
ignored, and ``--rename`` maps a config's old name to its new one.
"""
import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[2]
#: Top-level keys that the Runner (and tools/test.py's --tta) reads from a config.
RUNNER_KEYS = (
    'auto_scale_lr', 'custom_hooks', 'custom_imports', 'data_preprocessor', 'default_hooks',
    'default_scope', 'env_cfg', 'launcher', 'load_from', 'log_level', 'log_processor',
    'model', 'model_wrapper_cfg', 'optim_wrapper', 'param_scheduler', 'randomness', 'resume',
    'test_cfg', 'test_dataloader', 'test_evaluator', 'train_cfg', 'train_dataloader',
    'tta_model', 'tta_pipeline', 'val_cfg', 'val_dataloader', 'val_evaluator', 'visualizer',
    'work_dir')


def all_configs() -> List[Path]:
    return sorted(p for p in (REPO / 'configs').rglob('*.py') if '_base_' not in p.parts)


def param_groups(cfg) -> Dict[str, List[float]]:
    """{parameter name: [lr, weight decay]} of the optimizer that ``cfg`` builds."""
    import torch
    from mmengine.optim import build_optim_wrapper

    from dat.adapters.builder import build_model_from_config

    with torch.device('meta'):
        model = build_model_from_config(cfg)
    optim_cfg = cfg.optim_wrapper.copy()
    optim_cfg.type = 'OptimWrapper'  # the groups do not depend on the wrapper (AMP: CUDA)
    for key in ('loss_scale', 'dtype'):
        optim_cfg.pop(key, None)
    optimizer = build_optim_wrapper(model, optim_cfg).optimizer
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: [group['lr'], group['weight_decay']]
            for group in optimizer.param_groups for p in group['params']}


def dump(paths: Sequence[Path], with_groups: bool) -> Dict[str, Any]:
    from mmengine.logging import MMLogger

    from dat.cli import load_config  # (dat:: config paths: it applies dat.mmengine_patches)

    MMLogger.get_current_instance().setLevel('WARNING')  # no line per parameter group

    out = {}
    for path in paths:
        cfg = load_config(str(path))
        entry = {key: cfg[key] for key in RUNNER_KEYS if key in cfg}
        entry = json.loads(json.dumps(_plain(entry), sort_keys=True, default=repr))
        if with_groups:
            entry['param_groups'] = param_groups(cfg)
        out[path.stem] = entry
        print(f'{path.relative_to(REPO) if path.is_relative_to(REPO) else path}', file=sys.stderr)
    return out


def _plain(value: Any) -> Any:
    from mmengine.config import ConfigDict
    if isinstance(value, (dict, ConfigDict)):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def differences(before: Any, after: Any, path: str = '') -> List[str]:
    """Lines ``path: before -> after`` for every leaf that differs."""
    if isinstance(before, dict) and isinstance(after, dict):
        lines = []
        for key in sorted(set(before) | set(after)):
            sub = f'{path}.{key}' if path else key
            if key not in after:
                lines.append(f'{sub}: removed (was {before[key]!r:.200})')
            elif key not in before:
                lines.append(f'{sub}: added ({after[key]!r:.200})')
            else:
                lines += differences(before[key], after[key], sub)
        return lines
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        return [line for i, (a, b) in enumerate(zip(before, after))
                for line in differences(a, b, f'{path}[{i}]')]
    return [] if before == after else [f'{path}: {before!r:.200} -> {after!r:.200}']


def _without_default_scope(value: Any, scope: Optional[str]) -> Any:
    """``value`` without the ``_scope_`` keys that name the config's default scope (they
    change nothing: the registry of that scope is the one used anyway)."""
    if isinstance(value, dict):
        return {k: _without_default_scope(v, scope) for k, v in value.items()
                if not (k == '_scope_' and v == scope)}
    if isinstance(value, list):
        return [_without_default_scope(v, scope) for v in value]
    return value


def _read_dump(path: str) -> Dict[str, Any]:
    return {name: _without_default_scope(entry, entry.get('default_scope'))
            for name, entry in json.loads(Path(path).read_text()).items()}


def compare(before_file: str, after_file: str, renames: Dict[str, str]) -> int:
    before, after = _read_dump(before_file), _read_dump(after_file)
    before = {renames.get(name, name): entry for name, entry in before.items()}
    problems = [f'{name}: only in {before_file}' for name in sorted(set(before) - set(after))]
    problems += [f'{name}: only in {after_file}' for name in sorted(set(after) - set(before))]
    for name in sorted(set(before) & set(after)):
        problems += [f'{name}: {line}' for line in differences(before[name], after[name])]
    print('\n'.join(problems) if problems else
          f'{len(after)} configs: the same resolved values in both dumps')
    return 1 if problems else 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('configs', nargs='*', help='config files (default: all of configs/)')
    parser.add_argument('--out', help='write the dump to this JSON file')
    parser.add_argument('--param-groups', action='store_true',
                        help="also dump each parameter's lr and weight decay")
    parser.add_argument('--compare', nargs=2, metavar=('BEFORE', 'AFTER'),
                        help='compare two dumps instead')
    parser.add_argument('--rename', nargs='+', default=[], metavar='OLD=NEW',
                        help='with --compare: config names that changed')
    args = parser.parse_args(argv)
    if args.compare:
        return compare(*args.compare, dict(r.split('=', 1) for r in args.rename))
    if not args.out:
        parser.error('--out FILE or --compare BEFORE AFTER is needed')
    paths = [Path(p).resolve() for p in args.configs] or all_configs()
    Path(args.out).write_text(json.dumps(dump(paths, args.param_groups), indent=1,
                                         sort_keys=True))
    print(f'{len(paths)} configs written to {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
