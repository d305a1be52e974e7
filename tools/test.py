"""Evaluate a checkpoint on a config's test set with mmengine's Runner.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out results.pkl] [--tta]
        [--amp [{fp16,bf16}]]
    bash tools/dist_test.sh CONFIG CHECKPOINT GPUS [args]
"""
import argparse

import torch
from mmengine.evaluator import DumpResults
from mmengine.runner import Runner

from dat.cli import check_checkpoint, fail, load_config, one_line_errors
from dat.engine import TrainingStopped, add_stop_hook, exit_stopped, install_stop_signals
from dat.models.checkpoint import check_fit
from dat.runner_utils import (add_runner_arguments, apply_runner_arguments, check_data,
                              check_image_loading, finish_distributed, setup_cpu_run)


def parse_args():
    parser = argparse.ArgumentParser(description='Test (and evaluate) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', help='dump the raw predictions to this pickle file')
    parser.add_argument('--tta', action='store_true',
                        help="test-time augmentation: the config's tta_pipeline and tta_model "
                        '(segmentation: multi-scale flip test)')
    parser.add_argument('--amp', nargs='?', const='fp16', choices=('fp16', 'bf16'),
                        help="mixed precision testing (the test loop's fp16 switch): fp16 "
                        'autocast (--amp alone) or bf16 autocast (--amp bf16)')
    add_runner_arguments(parser)
    return parser.parse_args()


@one_line_errors
def main():
    install_stop_signals()  # testing stops cleanly on SIGTERM, SIGINT, SIGUSR1
    args = parse_args()
    cfg = apply_runner_arguments(load_config(args.config, args.cfg_options), args)
    check_checkpoint(args.checkpoint)
    cfg.load_from = args.checkpoint
    if args.amp:
        cfg.test_cfg = dict(cfg.get('test_cfg') or {}, fp16=True)
        if args.amp == 'bf16':
            # mmengine's TestLoop autocasts to the default autocast dtype of the device.
            torch.set_autocast_dtype('cuda', torch.bfloat16)
    if args.tta:
        if 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
            fail(f'--tta needs tta_model and tta_pipeline in {args.config}')
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
        cfg.tta_model.module = cfg.model
        cfg.model = cfg.tta_model
    check_data(cfg, ['test_dataloader'])  # a missing dataset is one line
    add_stop_hook(cfg)
    check_image_loading(cfg)
    setup_cpu_run(cfg)
    runner = Runner.from_cfg(cfg)
    # mmengine loads load_from with strict=False, which would test a partly random model
    check_fit(runner.model, args.checkpoint, what=f'model of {args.config}')
    if args.out:
        runner.test_evaluator.metrics.append(DumpResults(out_file_path=args.out))
    try:
        metrics = runner.test()
    except TrainingStopped as err:
        exit_stopped(err)
    if runner.rank == 0:
        print(' '.join(f'{k}: {v:.4f}' if isinstance(v, float) else f'{k}: {v}'
                       for k, v in metrics.items()))
    finish_distributed()


if __name__ == '__main__':
    main()
