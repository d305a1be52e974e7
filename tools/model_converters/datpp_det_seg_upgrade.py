"""Convert a DAT++ detection (mmdet 2.26) or segmentation (mmseg 0.29) checkpoint of the
authors' release into an mmdet 3 / mmseg 1 checkpoint for this project's configs.

    python tools/model_converters/datpp_det_seg_upgrade.py mrcn_tiny_1x.pth \\
        checkpoints/mask-rcnn_datpp-tiny_fpn_32xb2-amp-ms-crop-1x_coco.pth \\
        --config configs/mask_rcnn/mask-rcnn_datpp-tiny_fpn_32xb2-amp-ms-crop-1x_coco.py

The backbone keys are renamed as for ImageNet checkpoints (``dat/converters/datpp.py``);
neck and head keys are kept (mmdet 3 and mmseg 1 use the same names). With ``--config`` the
result is also loaded, strictly, into that config's model before it is written.
"""
import argparse

from datpp2mmpretrain import convert_file, save  # the script's folder is on sys.path

from dat.cli import fail
from dat.converters.datpp import convert_datpp_downstream


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='mmdet 2 / mmseg 0.x checkpoint with a DAT++ backbone')
    parser.add_argument('dst', help='where to write the mmdet 3 / mmseg 1 checkpoint')
    parser.add_argument('--config', help='check that the result loads strictly into the '
                        'model of this config')
    return parser.parse_args()


def check_loads(state_dict: dict, config: str):
    """Load ``state_dict`` strictly into ``config``'s model; exit naming the keys if not."""
    from dat.adapters.builder import build_model_from_config
    from dat.cli import load_config
    from dat.models.checkpoint import CheckpointError, load_weights

    cfg = load_config(config)
    cfg.model.backbone.init_cfg = None
    try:
        load_weights(build_model_from_config(cfg), state_dict, what=f'model of {config}',
                     logger=None)
    except CheckpointError as err:
        fail(f'the converted checkpoint: {err}')


def main():
    args = parse_args()
    state_dict, info = convert_file(args.src, convert_datpp_downstream)
    if args.config:
        check_loads(state_dict, args.config)
    save(args.dst, state_dict,
         dict(converted_from='datpp-det-seg', dataset_meta=info.pop('dataset_meta'), **info))
    arch = info['arch'] if isinstance(info['arch'], str) else 'custom'
    others = sorted({k.split('.')[0] for k in state_dict} - {'backbone'})
    print(f'converted {len(state_dict)} tensors (DAT++ arch {arch}, backbone outputs '
          f"{list(info['out_indices'])}; kept {', '.join(others)})"
          + (f', checked against {args.config}' if args.config else '') + f' -> {args.dst}')


if __name__ == '__main__':
    main()
