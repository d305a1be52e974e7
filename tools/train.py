"""Train a model from a config with mmengine's Runner (classification, detection or
segmentation; the config's ``default_scope`` picks the library).

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp [{fp16,bf16}]]
    bash tools/dist_train.sh CONFIG GPUS [args]

Without a GPU it runs on the CPU, and distributed runs use the gloo backend. A full disk,
a diverged loss or an unreadable image stops the run with one line, and so does missing data;
SIGTERM, SIGINT and SIGUSR1 save an iteration checkpoint and exit with 75 (docs/faults.md).
"""
import argparse
import errno
import os
import sys

from mmengine.config import Config
from mmengine.runner import Runner

from dat.cli import check_checkpoint, fail, load_config, one_line_errors
from dat.engine import (TrainingFault, TrainingStopped, add_stop_hook, exit_stopped,
                        find_resumable_checkpoint, install_stop_signals, one_line_fault,
                        remove_stale_temp_files, resume_after_requeue)
from dat.models.checkpoint import CheckpointError, check_fit
from dat.runner_utils import (add_runner_arguments, apply_runner_arguments, check_data,
                              check_image_loading, finish_distributed, setup_cpu_run)


def parse_args():
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from a checkpoint; with no value, from the latest checkpoint in the '
        'work dir, if there is one (if it cannot be read, from the newest one that can)')
    parser.add_argument('--amp', nargs='?', const='fp16', choices=('fp16', 'bf16'),
                        help='mixed precision training (AmpOptimWrapper): fp16 autocast with '
                        'dynamic loss scaling (--amp alone), or bf16 autocast (--amp bf16)')
    parser.add_argument('--no-validate', action='store_true',
                        help='do not evaluate checkpoints during training')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr with the total batch size (auto_scale_lr)')
    parser.add_argument('--no-pin-memory', action='store_true',
                        help='do not pin memory in the dataloaders')
    parser.add_argument('--no-persistent-workers', action='store_true',
                        help='do not keep dataloader workers between epochs')
    add_runner_arguments(parser)
    return parser.parse_args()


def merge_args(cfg: Config, args) -> Config:
    """The training settings of ``args`` in ``cfg`` (whose ``--cfg-options`` are merged)."""
    apply_runner_arguments(cfg, args)
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
        if args.amp == 'bf16':
            cfg.optim_wrapper.dtype = 'bfloat16'
    if os.environ.get('RANK', '0') == '0':  # before mmengine writes into the work dir
        for path in remove_stale_temp_files(cfg.work_dir):
            rank0_print(f'removed {path}, left by an interrupted checkpoint save')
    if args.resume == 'auto':
        cfg.resume = True
        try:
            cfg.load_from = find_resumable_checkpoint(cfg.work_dir, warn=rank0_print)
        except CheckpointError as err:
            fail(str(err))
    elif args.resume is not None:
        check_checkpoint(args.resume)
        cfg.resume = True
        cfg.load_from = args.resume
    if args.no_validate:
        cfg.val_cfg = None
        cfg.val_dataloader = None
        cfg.val_evaluator = None
    if args.auto_scale_lr:
        cfg.auto_scale_lr.enable = True
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(name)
        if loader is None:
            continue
        if args.no_pin_memory:
            loader['pin_memory'] = False
        if args.no_persistent_workers or loader.get('num_workers', 0) == 0:
            loader['persistent_workers'] = False
    check_data(cfg)  # a missing dataset is one line (DAT_CHECK_ONLY=1: exit here)
    add_stop_hook(cfg)
    check_image_loading(cfg)
    setup_cpu_run(cfg)
    return cfg


def rank0_print(message: str):
    if os.environ.get('RANK', '0') == '0':
        print(message, file=sys.stderr, flush=True)


@one_line_errors
def main():
    install_stop_signals()  # a stop signal saves a checkpoint (docs/faults.md)
    args = parse_args()
    args.resume = resume_after_requeue(args.resume)
    cfg = merge_args(load_config(args.config, args.cfg_options), args)
    try:
        runner = Runner.from_cfg(cfg)
        if cfg.get('load_from'):
            # mmengine loads load_from with strict=False and only logs what does not fit
            check_fit(runner.model, cfg.load_from, backbones_only=True)
        runner.train()
    except TrainingStopped as err:  # SIGTERM, SIGINT, SIGUSR1: saved, exit code 75
        exit_stopped(err)
    except TrainingFault as err:  # a full disk, a diverged loss, an unreadable image
        fail(one_line_fault(err))
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        fail(f'{err.filename or cfg.work_dir}: {err.strerror}')
    finish_distributed()


if __name__ == '__main__':
    main()
