"""Run a DAT model on one image: classification, detection or segmentation.

    # classification: prints the top-5 classes with scores
    python tools/demo/image_demo.py demo.jpg configs/dat/dat-tiny_8xb128-amp_in1k.py \
        --checkpoint dat-tiny_in1k.pth
    python tools/demo/image_demo.py demo.jpg dat-tiny_8xb128-amp_in1k --checkpoint CKPT
    # detection: draws the boxes (and masks)
    python tools/demo/image_demo.py demo.jpg configs/mask_rcnn/CONFIG.py CKPT --out-file out.jpg
    # segmentation: writes the coloured mask over the image
    python tools/demo/image_demo.py demo.jpg configs/upernet/CONFIG.py CKPT --out-file out.jpg

The task comes from the config's ``default_scope``; a name that is not a file is looked up
in mmpretrain's model index (``mmpretrain.list_models('dat*')``). Without a checkpoint the
model keeps random weights (seed 0), which is enough to try the pipeline.
"""
import argparse
import os.path as osp

import mmcv

from dat.cli import check_checkpoint, fail, load_config, one_line_errors


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


def read_config(config: str):
    """The config, or None for a model name of the model index."""
    if osp.isfile(config):
        cfg = load_config(config)
        # The demo writes its drawing itself: no visualizer backends (which want a save_dir).
        if cfg.get('visualizer'):
            cfg.visualizer.vis_backends = None
        return cfg
    if config.endswith('.py') or osp.sep in config:
        fail(f'no such config: {config}')
    return None


def classify(args, cfg, checkpoint):
    import torch
    from mmpretrain.apis import ImageClassificationInferencer, get_model

    import dat.adapters.mmpretrain  # noqa: F401  (registers the DAT model names)
    from dat.models.checkpoint import load_weights, read_checkpoint

    try:
        model = get_model(cfg or args.config, pretrained=False, device=args.device)
    except ValueError as err:  # an unknown model name
        fail(f'{args.config} is neither a config file nor a model name: {err}')
    if checkpoint is not None:  # strict: a checkpoint of another model is an error
        ckpt = read_checkpoint(checkpoint)
        load_weights(model, ckpt, what=f'model of {args.config}', logger=None)
        meta = ckpt.get('meta', {}) if isinstance(ckpt, dict) else {}
        if 'dataset_meta' in meta:
            model._dataset_meta = meta['dataset_meta']
    inferencer = ImageClassificationInferencer(model, pretrained=False, device=args.device)
    result = inferencer(args.img, return_datasamples=True)[0]
    scores = result.pred_score
    classes = (inferencer.classes or [str(i) for i in range(len(scores))])
    values, indices = torch.topk(scores, min(args.topk, len(scores)))
    for rank, (score, index) in enumerate(zip(values.tolist(), indices.tolist()), 1):
        print(f'{rank}: {classes[index]} (class {index}) score {score:.4f}')


class StrictWeights:
    """For mmdet's / mmseg's inferencers: the checkpoint must fit the whole model, and the
    class names and palette come from the checkpoint's meta or else from the config's test
    dataset (not from COCO or Cityscapes, the libraries' defaults)."""

    def _load_weights_to_model(self, model, checkpoint, cfg):
        from dat.models.checkpoint import load_weights

        meta = {}
        if checkpoint is not None:
            load_weights(model, checkpoint, what='model of the config', logger=None)
            meta = checkpoint.get('meta', {}).get('dataset_meta') or {}
            meta = {k.lower(): v for k, v in meta.items()}
        if not meta.get('classes'):
            meta = dataset_meta(cfg)
        model.dataset_meta = {'classes': meta.get('classes'), 'palette': meta.get('palette')}


def dataset_meta(cfg) -> dict:
    """Class names and palette of the config's test dataset (built without its data)."""
    import copy

    from mmengine.registry import DATASETS

    dataset_cfg = copy.deepcopy(cfg.test_dataloader.dataset)
    dataset_cfg.update(lazy_init=True, pipeline=[])
    return DATASETS.build(dataset_cfg).metainfo


def detect(args, cfg, checkpoint):
    from mmdet.apis import DetInferencer

    class Inferencer(StrictWeights, DetInferencer):
        pass

    inferencer = Inferencer(cfg, weights=checkpoint, device=args.device, show_progress=False)
    result = inferencer(args.img, return_vis=True, no_save_vis=True,
                        pred_score_thr=args.score_thr)
    pred = result['predictions'][0]
    kept = [s for s in pred['scores'] if s >= args.score_thr]
    print(f'{len(kept)} detections with score >= {args.score_thr} '
          f'({len(pred["scores"])} in all)')
    if args.out_file:
        mmcv.imwrite(mmcv.rgb2bgr(result['visualization'][0]), args.out_file)
        print(f'drawing written to {args.out_file}')


def segment(args, cfg, checkpoint):
    import numpy as np
    from mmseg.apis import MMSegInferencer

    class Inferencer(StrictWeights, MMSegInferencer):
        pass

    inferencer = Inferencer(cfg, weights=checkpoint, device=args.device)
    result = inferencer(args.img, return_vis=True)
    labels = np.asarray(result['predictions'])
    classes = inferencer.model.dataset_meta['classes'] or ()
    ids, counts = np.unique(labels, return_counts=True)
    order = np.argsort(-counts, kind='stable')
    share = ', '.join(
        f'{str(classes[ids[i]]).strip() if ids[i] < len(classes) else "?"} ({ids[i]}): '
        f'{counts[i] / labels.size:.1%}' for i in order)
    print(f'predicted classes (share of pixels): {share}')
    if args.out_file:
        mmcv.imwrite(mmcv.rgb2bgr(result['visualization']), args.out_file)
        print(f'overlay written to {args.out_file}')


@one_line_errors
def main():
    args = parse_args()
    if not osp.isfile(args.img):
        fail(f'no such image: {args.img}')
    if mmcv.imread(args.img) is None:
        fail(f'cannot read {args.img} as an image')
    checkpoint = args.checkpoint_opt or args.checkpoint
    cfg = read_config(args.config)
    task = cfg.get('default_scope', 'mmpretrain') if cfg else 'mmpretrain'
    if checkpoint is not None:
        check_checkpoint(checkpoint)
    else:
        print('no checkpoint given: the model has random weights (seed 0)')
        import torch
        torch.manual_seed(0)
    runners = dict(mmpretrain=classify, mmdet=detect, mmseg=segment)
    if task not in runners:
        fail(f'{args.config} has default_scope={task!r}; expected one of {sorted(runners)}')
    runners[task](args, cfg, checkpoint)


if __name__ == '__main__':
    main()
