"""Convert a checkpoint of the 2022 DAT release into an mmpretrain checkpoint.

    python tools/model_converters/dat2mmpretrain.py dat_tiny_in1k_224.pth dat-tiny_in1k.pth

The result loads with ``mmpretrain.apis.get_model(CONFIG, pretrained=DST)`` and, through
``init_cfg=dict(type='Pretrained', checkpoint=DST, prefix='backbone.')``, into detection
and segmentation backbones.
"""
import argparse
import os

import torch

from dat.cli import fail
from dat.converters import ConversionError, convert_dat2022
from dat.models.checkpoint import CheckpointError, read_checkpoint


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='2022 checkpoint ({"model": state_dict})')
    parser.add_argument('dst', help='where to write the mmpretrain checkpoint')
    return parser.parse_args()


def main():
    args = parse_args()
    try:  # runs no code from the file; a yacs CfgNode beside the weights is read as data
        state_dict, arch_info = convert_dat2022(read_checkpoint(args.src))
    except CheckpointError as err:
        fail(str(err))
    except ConversionError as err:
        fail(f'{args.src}: {err}')
    os.makedirs(os.path.dirname(os.path.abspath(args.dst)), exist_ok=True)
    torch.save(dict(state_dict=state_dict, meta=dict(converted_from='dat2022', **arch_info)),
               args.dst)
    arch = arch_info['arch'] if isinstance(arch_info['arch'], str) else 'custom'
    print(f'converted {len(state_dict)} tensors (arch {arch}, img_size '
          f"{arch_info['img_size']}, {arch_info['num_classes']} classes) -> {args.dst}")


if __name__ == '__main__':
    main()
