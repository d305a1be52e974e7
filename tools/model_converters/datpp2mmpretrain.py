"""Convert an ImageNet checkpoint of the DAT++ release into an mmpretrain checkpoint.

    python tools/model_converters/datpp2mmpretrain.py dat_pp_tiny_in1k_224.pth datpp-tiny.pth

The result loads with ``mmpretrain.apis.get_model(CONFIG, pretrained=DST)`` for the
configs in ``configs/datpp``, and, through ``init_cfg=dict(type='Pretrained',
checkpoint=DST, prefix='backbone.')``, into detection and segmentation backbones.
"""
import argparse
import os

import torch

from dat.cli import fail
from dat.converters import ConversionError
from dat.converters.datpp import convert_datpp
from dat.models.checkpoint import CheckpointError, read_checkpoint


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='DAT++ checkpoint ({"model": state_dict})')
    parser.add_argument('dst', help='where to write the mmpretrain checkpoint')
    return parser.parse_args()


def convert_file(src: str, convert):
    """``convert(checkpoint)`` of the file ``src``; exits with one line naming the problem."""
    try:  # runs no code from the file (see dat.models.checkpoint)
        checkpoint = read_checkpoint(src)
    except CheckpointError as err:
        fail(str(err))
    try:
        return convert(checkpoint)
    except ConversionError as err:
        fail(f'{src}: {err}')


def save(dst: str, state_dict: dict, meta: dict):
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    torch.save(dict(state_dict=state_dict, meta=meta), dst)


def main():
    args = parse_args()
    state_dict, arch_info = convert_file(args.src, convert_datpp)
    if arch_info['num_classes'] is None:
        fail(f'{args.src} has no classifier (cls_head); for a detection or '
             'segmentation checkpoint use datpp_det_seg_upgrade.py')
    save(args.dst, state_dict, dict(converted_from='datpp', **arch_info))
    arch = arch_info['arch'] if isinstance(arch_info['arch'], str) else 'custom'
    params = sum(v.numel() for v in state_dict.values())
    print(f'converted {len(state_dict)} tensors, {params:,} parameters (DAT++ arch {arch}, '
          f"img_size {arch_info['img_size']}, {arch_info['num_classes']} classes) -> {args.dst}")


if __name__ == '__main__':
    main()
