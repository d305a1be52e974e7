"""What tools/train.py and tools/test.py share around mmengine's Runner: their common
command-line arguments, and the settings that let the Runner run without a GPU."""
import argparse
import os
import os.path as osp
import subprocess

import torch
from mmengine.config import Config, DictAction


def add_runner_arguments(parser: argparse.ArgumentParser) -> None:
    """``--work-dir``, ``--cfg-options``, ``--launcher`` and ``--local-rank``."""
    parser.add_argument('--work-dir', help='the folder for logs, checkpoints and metrics '
                        '(default: ./work_dirs/CONFIG_NAME)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings of the config, "key=value" (e.g. '
        'train_dataloader.batch_size=64 model.backbone.drop_path_rate=0.1)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def apply_runner_arguments(cfg: Config, args: argparse.Namespace) -> Config:
    """Put the arguments of :func:`add_runner_arguments` into ``cfg`` (``--cfg-options`` are
    merged by :func:`dat.cli.load_config`): the launcher, the work dir (by default
    ``./work_dirs/CONFIG_NAME``), and ``LOCAL_RANK`` from ``--local-rank`` where the
    launcher did not set it."""
    os.environ.setdefault('LOCAL_RANK', str(getattr(args, 'local_rank', 0)))
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    return cfg


def check_image_loading(cfg: Config) -> Config:
    """Swap mmcv's ``LoadImageFromFile`` for :class:`~dat.transforms.CheckedLoadImageFromFile`
    (same arguments) in the pipelines of ``cfg``'s train, val and test datasets, wrapped
    datasets included: an image that cannot be read is then an error that names the file.

    The configs' test pipelines keep mmcv's name, because the inferencers of mmpretrain, mmdet
    and mmseg find the loading step by that name and replace it; our tools make the swap
    before they build the Runner. A scope prefix (``mmdet.LoadImageFromFile``) is kept.
    """
    def visit(dataset):
        if not isinstance(dataset, dict):
            return
        for transform in dataset.get('pipeline') or ():
            kind = transform.get('type') if isinstance(transform, dict) else None
            if isinstance(kind, str) and kind.rpartition('.')[2] == 'LoadImageFromFile':
                scope = kind.rpartition('.')[0]
                transform['type'] = '.'.join(filter(None, (scope, 'CheckedLoadImageFromFile')))
        visit(dataset.get('dataset'))
        for inner in dataset.get('datasets') or ():
            visit(inner)

    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(name)
        if isinstance(loader, dict):
            visit(loader.get('dataset'))
    return cfg


def setup_cpu_run(cfg: Config) -> None:
    """Without CUDA, adapt ``cfg`` for the CPU and start the process group of a distributed run.

    - AMP optimizer wrappers (CUDA only) become plain ``OptimWrapper``;
    - distributed runs use gloo, and DDP wraps the CPU module without ``device_ids``;
    - the gloo process group is started here, because mmengine's ``init_dist`` calls
      ``torch.cuda.set_device``; the Runner then uses the group that is already there.
      Under ``--launcher slurm`` its rendezvous variables come from :func:`slurm_env`.
    """
    if torch.cuda.is_available():
        return
    optim_wrapper = cfg.get('optim_wrapper')
    if optim_wrapper is not None and optim_wrapper.get('type') == 'AmpOptimWrapper':
        optim_wrapper.type = 'OptimWrapper'
        optim_wrapper.pop('loss_scale', None)
        optim_wrapper.pop('dtype', None)
    cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['backend'] = 'gloo'
    if cfg.get('launcher', 'none') == 'none':
        return
    # mmengine's default wrapper, with torch >= 2.13's name for not syncing buffers at every
    # forward (`broadcast_buffers` is deprecated and warns on every process).
    wrapper = dict(type='MMDistributedDataParallel', forward_sync_buffers=False,
                   find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper.update(cfg.get('model_wrapper_cfg') or {}, device_ids=None)
    cfg.model_wrapper_cfg = wrapper
    if not torch.distributed.is_initialized():
        if cfg.launcher == 'slurm':
            slurm_env(cfg.env_cfg.dist_cfg.get('port'))
        torch.distributed.init_process_group('gloo')


def slurm_env(port=None) -> None:
    """Set torch's ``env://`` rendezvous variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
    MASTER_PORT) from those of a Slurm task, the way mmengine's slurm launcher does: the
    master is the job's first node, and the port is ``port``, else ``MASTER_PORT``, else
    29500. ``MASTER_ADDR`` is kept when it is set."""
    env = os.environ
    first_node = subprocess.getoutput(
        f"scontrol show hostname {env['SLURM_NODELIST']} | head -n1")
    if port is not None:
        env['MASTER_PORT'] = str(port)
    env.setdefault('MASTER_PORT', '29500')
    env.setdefault('MASTER_ADDR', first_node)
    env['WORLD_SIZE'] = env['SLURM_NTASKS']
    env['RANK'] = env['SLURM_PROCID']
    env['LOCAL_RANK'] = env.get('SLURM_LOCALID', '0')


def finish_distributed() -> None:
    """Tear down the process group before the interpreter exits: a gloo group left alive
    can abort the process at exit ("terminate called without an active exception")."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


#: Where each dataset type's layout is described (other types, and COCO / ADE20K datasets
#: with a ``metainfo`` of their own: :data:`CUSTOM_DATA_DOC`).
DATA_DOCS = {'ImageNet': 'docs/classification.md', 'CocoDataset': 'docs/detection.md',
             'ADE20KDataset': 'docs/segmentation.md'}
CUSTOM_DATA_DOC = 'docs/custom_dataset.md'


def _is_url(path) -> bool:
    return isinstance(path, str) and '://' in path


def _dataset_paths(dataset: dict, key: str):
    """(path, config key, dataset type) of the files a dataset config reads, wrapped datasets
    included, in the order they are checked: the data root, the annotation file, the
    folders of ``data_prefix``."""
    if not isinstance(dataset, dict):
        return
    if isinstance(dataset.get('dataset'), dict):
        yield from _dataset_paths(dataset['dataset'], f'{key}.dataset')
    for i, inner in enumerate(dataset.get('datasets') or ()):
        yield from _dataset_paths(inner, f'{key}.datasets[{i}]')
    kind = str(dataset.get('type', '')).rpartition('.')[2]
    if kind != 'ImageNet' and dataset.get('metainfo'):
        kind = 'custom'  # COCO / ADE20K files with classes of their own: docs/custom_dataset.md
    root = dataset.get('data_root') or ''
    if root:
        yield root, f'{key}.data_root', kind
    if dataset.get('ann_file'):
        yield osp.join(root, dataset['ann_file']), f'{key}.ann_file', kind
    prefix = dataset.get('data_prefix')
    prefixes = prefix.items() if isinstance(prefix, dict) else [('', prefix)]
    for name, value in prefixes:
        if isinstance(value, str) and value:
            yield osp.join(root, value), f"{key}.data_prefix{'.' + name if name else ''}", kind


def check_data(cfg: Config, loaders=('train_dataloader', 'val_dataloader')) -> None:
    """Fail in one line, naming the path, the config key that sets it and the doc of the
    data's layout, if a file or folder that the datasets of ``loaders`` read is missing
    (a dataset the user has not prepared, a wrong ``data_root``), instead of mmengine's
    traceback from deep inside the dataset. ``DAT_TRACEBACK=1`` raises the error with a
    traceback instead. Rank 0 prints the line, the other ranks exit quietly with status 1.

    With ``DAT_CHECK_ONLY=1`` the process exits with status 0 once the check passed (the
    Slurm scripts check on the submitting machine before they ask for GPUs)."""
    for name in loaders:
        loader = cfg.get(name)
        if not isinstance(loader, dict):
            continue
        for path, key, kind in _dataset_paths(loader.get('dataset'), f'{name}.dataset'):
            if _is_url(path) or osp.exists(path):
                continue
            doc = DATA_DOCS.get(kind, CUSTOM_DATA_DOC)
            message = (f'{path}: no such file or directory (set by {key}; see {doc} for how '
                       'to lay out the data)')
            if os.environ.get('DAT_TRACEBACK') == '1':
                raise FileNotFoundError(message)
            if os.environ.get('RANK', os.environ.get('SLURM_PROCID', '0')) != '0':
                raise SystemExit(1)
            raise SystemExit(f'error: {message}')
    if os.environ.get('DAT_CHECK_ONLY') == '1':
        raise SystemExit(0)
