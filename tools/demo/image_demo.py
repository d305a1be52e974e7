"""Run a DAT model on one image: classification, detection or segmentation.

    # classification: prints the top-5 classes with scores
    python tools/demo/image_demo.py demo.jpg configs/dat/dat-tiny_8xb128_in1k.py \
        --checkpoint dat-tiny_in1k.pth
    python tools/demo/image_demo.py demo.jpg dat-tiny_8xb128_in1k --checkpoint CKPT
    # detection: draws the boxes (and masks)
    python tools/demo/image_demo.py demo.jpg configs/mask_rcnn/CONFIG.py CKPT --out-file out.jpg
    # segmentation: writes the coloured mask over the image
    python tools/demo/image_demo.py demo.jpg configs/upernet/CONFIG.py CKPT --out-file out.jpg

The task comes from the config's ``default_scope``; a name that is not a file is looked up
in mmpretrain's model index (``mmpretrain.list_models('dat*')``). Without a checkpoint the
model keeps random weights, which is enough to try the pipeline.
"""
import argparse
import os.path as osp
import sys

import mmcv
from mmengine.config import Config

from dat.runner_utils import allow_runner_checkpoints

allow_runner_checkpoints()


def parse_args():
    parser = argparse.ArgumentParser(description='Image demo for DAT models')
    parser.add_argument('img', help='image file')
    parser.add_argument('config', help='config file, or a model name from the model index')
    parser.add_argument('checkpoint', nargs='?', default=None, help='checkpoint file')
    parser.add_argument('--checkpoint', dest='checkpoint_opt', default=None,
                        help='checkpoint file (same as the positional argument)')
    parser.add_argument('--out-file', default=None,
                        help='detection / segmentation: where to write the drawing')
    parser.add_argument('--device', default='cpu', help='device, e.g. cpu or cuda:0')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='detection: lowest score to draw')
    parser.add_argument('--topk', type=int, default=5, help='classification: classes to print')
    return parser.parse_args()


def task_of(config: str) -> str:
    if not osp.isfile(config):
        return 'mmpretrain'
    return Config.fromfile(config).get('default_scope', 'mmpretrain')


def classify(args, checkpoint):
    import torch
    from mmengine.runner import load_checkpoint
    from mmpretrain.apis import ImageClassificationInferencer, get_model

    import dat.adapters.mmpretrain  # noqa: F401  (registers the DAT model names)

    try:
        model = get_model(args.config, pretrained=False, device=args.device)
    except ValueError as err:  # an unknown model name
        sys.exit(f'error: {args.config} is neither a config file nor a model name: {err}')
    if checkpoint is not None:
        try:  # strict: a checkpoint of another model is an error, not a warning
            meta = load_checkpoint(model, checkpoint, map_location='cpu', strict=True)
        except RuntimeError as err:
            sys.exit(f'error: {checkpoint} does not fit {args.config}: '
                     f'{str(err).strip()[:500]}')
        meta = meta.get('meta', {}) if isinstance(meta, dict) else {}
        if 'dataset_meta' in meta:
            model._dataset_meta = meta['dataset_meta']
    inferencer = ImageClassificationInferencer(model, pretrained=False, device=args.device)
    result = inferencer(args.img, return_datasamples=True)[0]
    scores = result.pred_score
    classes = (inferencer.classes or [str(i) for i in range(len(scores))])
    values, indices = torch.topk(scores, min(args.topk, len(scores)))
    for rank, (score, index) in enumerate(zip(values.tolist(), indices.tolist()), 1):
        print(f'{rank}: {classes[index]} (class {index}) score {score:.4f}')


def detect(args, checkpoint):
    from mmdet.apis import DetInferencer

    inferencer = DetInferencer(args.config, weights=checkpoint, device=args.device,
                               show_progress=False)
    result = inferencer(args.img, return_vis=True, no_save_vis=True,
                        pred_score_thr=args.score_thr)
    pred = result['predictions'][0]
    kept = [s for s in pred['scores'] if s >= args.score_thr]
    print(f'{len(kept)} detections with score >= {args.score_thr} '
          f'({len(pred["scores"])} in all)')
    if args.out_file:
        mmcv.imwrite(mmcv.rgb2bgr(result['visualization'][0]), args.out_file)
        print(f'drawing written to {args.out_file}')


def segment(args, checkpoint):
    import numpy as np
    from mmseg.apis import MMSegInferencer

    inferencer = MMSegInferencer(args.config, weights=checkpoint, device=args.device)
    result = inferencer(args.img, return_vis=True)
    labels = np.asarray(result['predictions'])
    classes, counts = np.unique(labels, return_counts=True)
    share = ', '.join(f'{c}: {n / labels.size:.1%}' for c, n in zip(classes, counts))
    print(f'predicted classes (share of pixels): {share}')
    if args.out_file:
        mmcv.imwrite(mmcv.rgb2bgr(result['visualization']), args.out_file)
        print(f'overlay written to {args.out_file}')


def main():
    args = parse_args()
    if not osp.isfile(args.img):
        sys.exit(f'error: no such image: {args.img}')
    if mmcv.imread(args.img) is None:
        sys.exit(f'error: cannot read {args.img} as an image')
    checkpoint = args.checkpoint_opt or args.checkpoint
    if checkpoint is not None and not osp.isfile(checkpoint):
        sys.exit(f'error: no such checkpoint: {checkpoint}')
    if checkpoint is None:
        print('no checkpoint given: the model has random weights')
    task = task_of(args.config)
    runners = dict(mmpretrain=classify, mmdet=detect, mmseg=segment)
    if task not in runners:
        sys.exit(f'error: {args.config} has default_scope={task!r}; expected one of '
                 f'{sorted(runners)}')
    runners[task](args, checkpoint)


if __name__ == '__main__':
    main()
