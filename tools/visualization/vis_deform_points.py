"""Draw where the deformable attention of DAT or DAT++ looks: sampled keys, reference grid
and query.

    python tools/visualization/vis_deform_points.py demo.jpg \
        configs/dat/dat-tiny_8xb128-amp_in1k.py dat-tiny.pth --stage 2 --block 5 \
        --query 6 8 --out deform.png

For one D block and one query it draws, on the input image,
  - the sampled key positions of each offset group (one colour per group), as circles whose
    area follows the query's attention weight on that key (the mean over the group's heads;
    heads ``g*M/G .. (g+1)*M/G - 1`` belong to group ``g``, as in the position bias). A key
    with the uniform weight ``1 / keys`` gets a diameter of 0.3 feature-map cells; the area
    is proportional to the weight, capped at a diameter of 1.6 cells,
  - the reference grid (small white dots): where the keys would be sampled with no offset,
  - the query (white star).
Without ``--block`` it draws one panel per D block of the stage, side by side (at most 3
per row), each panel the size of the input image. Without ``--query`` it picks, in each
block, the query whose attention is the most concentrated (lowest entropy of its weights
over the keys, averaged over all heads) and prints which one it picked.

Everything drawn comes from ``DAT.forward_with_deform_info``; nothing is recomputed here.
``--stage`` counts from 0 (the keys ``stage{i}.block{j}`` of the backbone), and
``--query Y X`` is a cell of that stage's feature map. The checkpoint is optional: without
one the backbone keeps its random initial weights (seed 0), which is enough to try the tool.

Preprocessing: the image (BGR file -> RGB) is resized with bilinear interpolation so that
its short side is ``--short-side`` (default: the backbone's ``img_size``), normalised with
the config's data preprocessor mean / std, and fed as is (no crop, no pad).

Coordinates, exactly. A position ``p`` (y or x) in [-1, 1] is a ``grid_sample`` coordinate
with ``align_corners=True`` over the block's feature map of ``n`` cells (the map of the
queries; in DAT++ the keys are fewer, on a strided grid, but are sampled from that map), so
it reads the map at index ``f = (p + 1) / 2 * (n - 1)``. The stage-``s`` map has stride
``t = 4 * 2**s``. In DAT, cell ``i`` is computed from the input pixels ``[i * t, (i + 1) * t)``
(non-overlapping patch convolutions), so ``f`` is at input pixel ``(f + 0.5) * t - 0.5``
(pixel centres at integers); in DAT++, whose 3x3 stride-2 convolutions with padding 1
centre cell ``i`` on input pixel ``i * t``, it is at ``f * t``. An input pixel ``x`` is at
image pixel ``(x + 0.5) * N_img / N_in - 0.5`` after undoing the resize (``N`` = the side's
length in the image and in the network input). The query cell ``q`` is drawn at ``f = q``.
Note that the 2022 reference grid ``r_i = (i + 0.5) / n * 2 - 1`` is read with
``align_corners=True``, so the reference point of cell ``i`` sits slightly towards the map
centre from the cell's centre (DAT++'s ``(i + 0.5) / (n_k - 1) * 2 - 1`` on its key grid);
it is drawn where the model samples it.

``--dump FILE.json`` also writes every drawn coordinate (image pixels) and weight.
"""
import argparse
import json
import math
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from dat.cli import data_preprocessor, fail, load_config
from dat.families import build_backbone, family_of

#: Default mean / std (RGB, 0-255) when the config has no data preprocessor.
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
PATCH_STRIDE = 4
PANELS_PER_ROW = 3
#: Circle diameter, in cells of the feature map, of a key with the uniform weight 1 / keys;
#: the area grows with the weight, up to MAX_DIAMETER.
UNIFORM_DIAMETER = 0.3
MAX_DIAMETER = 1.6


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Draw the sampling points and attention of a DAT / DAT++ deformable block')
    parser.add_argument('img', help='image file')
    parser.add_argument('config', help='config file with a DAT or DAT++ backbone (any task)')
    parser.add_argument('checkpoint', nargs='?', default=None,
                        help='checkpoint (keys backbone.* or bare backbone keys); '
                        'random weights if omitted')
    parser.add_argument('--stage', type=int, default=None,
                        help='stage, from 0 (default: the first stage with D blocks)')
    parser.add_argument('--block', type=int, default=None,
                        help='D block index within the stage (default: a panel per D block)')
    parser.add_argument('--query', type=int, nargs=2, metavar=('Y', 'X'), default=None,
                        help='query cell in the stage feature map (default: most salient)')
    parser.add_argument('--short-side', type=int, default=None,
                        help="resize the image's short side to this (default: img_size)")
    parser.add_argument('--out', required=True, help='output PNG')
    parser.add_argument('--dump', default=None,
                        help='also write the drawn coordinates and weights to this JSON')
    parser.add_argument('--device', default='cpu', help='device, e.g. cpu or cuda:0')
    return parser.parse_args(argv)


def load_backbone(config: str, checkpoint: Optional[str]):
    """The DAT backbone of ``config`` with ``checkpoint`` loaded, the normalisation mean and
    std, and the short side of its training size."""
    from dat.models.checkpoint import load_weights

    cfg = load_config(config)
    if 'model' not in cfg or 'backbone' not in cfg.model:
        fail(f'{config} has no model.backbone')
    backbone_cfg = cfg.model.backbone.to_dict()
    torch.manual_seed(0)
    try:
        model = build_backbone(backbone_cfg)
        if checkpoint is not None:
            load_weights(model, checkpoint, prefix='backbone.',
                         what=f'backbone of {config}', logger=None)
    except ValueError as err:  # CheckpointError is one
        fail(str(err))
    preprocessor = data_preprocessor(cfg)
    mean = preprocessor.get('mean', IMAGENET_MEAN)
    std = preprocessor.get('std', IMAGENET_STD)
    img_size = backbone_cfg.get('img_size', 224)
    short_side = min(img_size) if isinstance(img_size, (list, tuple)) else img_size
    return model.eval(), mean, std, short_side


def read_image(path: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB."""
    import mmcv
    if not osp.isfile(path):
        fail(f'no such image: {path}')
    img = mmcv.imread(path)
    if img is None:
        fail(f'cannot read {path} as an image')
    return mmcv.bgr2rgb(img)


def preprocess(img: np.ndarray, short_side: int, mean, std) -> torch.Tensor:
    """Resize the short side to ``short_side`` (bilinear) and normalise: (1, 3, h, w)."""
    import mmcv
    height, width = img.shape[:2]
    scale = short_side / min(height, width)
    size = (max(round(width * scale), 1), max(round(height * scale), 1))  # (w, h)
    if size != (width, height):
        img = mmcv.imresize(img, size, interpolation='bilinear')
    x = (img.astype(np.float32) - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return torch.from_numpy(x).permute(2, 0, 1)[None].contiguous()


def deformable_blocks(model, stage: Optional[int]) -> Tuple[int, List[int]]:
    """The stage to draw and the indices of its D blocks; clear errors otherwise."""
    kinds = model.arch_settings['block_types']
    with_d = [i for i, k in enumerate(kinds) if 'D' in k]
    if not with_d:
        fail('this DAT has no D (deformable) block')
    if stage is None:
        stage = with_d[0]
    if not 0 <= stage < len(kinds):
        fail(f'--stage {stage} does not exist: DAT has stages 0-{len(kinds) - 1}')
    if stage not in with_d:
        fail(f'stage {stage} has no D block (block types {kinds[stage]!r}); '
             f'stages with D blocks: {with_d}')
    return stage, [j for j, k in enumerate(kinds[stage]) if k == 'D']


def salient_query(attn: torch.Tensor, width: int) -> Tuple[Tuple[int, int], float]:
    """The query with the lowest attention entropy (mean over heads), and that entropy.

    attn: (heads, queries, keys) softmax weights of one image.
    """
    entropy = -(attn * attn.clamp_min(1e-12).log()).sum(-1).mean(0)  # (queries,)
    index = int(entropy.argmin())
    return (index // width, index % width), float(entropy[index])


def to_image(f: torch.Tensor, stride: int, centre: float, image_size: Tuple[int, int],
             input_size: Tuple[int, int]) -> torch.Tensor:
    """Feature-map indices (..., 2) as (y, x) -> image pixels (..., 2) as (x, y)."""
    pixels = (f + centre) * stride - centre  # in the network input
    scale = f.new_tensor([image_size[0] / input_size[0], image_size[1] / input_size[1]])
    return ((pixels + 0.5) * scale - 0.5).flip(-1)


def panel_data(info: Dict, key: str, query: Optional[Tuple[int, int]], stride: int,
               centre: float, image_size: Tuple[int, int], input_size: Tuple[int, int]) -> Dict:
    """What one panel draws, in image pixels, from one block's ``forward_with_deform_info``."""
    positions = info['positions'][0].float()  # (G, Hk, Wk, 2), (y, x) in [-1, 1]
    references = info['references'][0, 0].float()  # (Hk, Wk, 2)
    attn = info['attn_weights'][0].float()  # (M, H*W, Hk*Wk)
    groups, key_h, key_w = positions.shape[:3]
    heads = attn.shape[0]
    # The queries' map, from which the keys are sampled (DAT: Hk, Wk = H, W).
    height, width = info['feature_size']
    if query is None:
        query, entropy = salient_query(attn, width)
        print(f'{key}: query (y, x) = {query} of the {height}x{width} map, picked as the most '
              f'concentrated attention (entropy {entropy:.3f} nats, mean over heads; '
              f'uniform: {math.log(key_h * key_w):.3f})')
    qy, qx = query
    if not (0 <= qy < height and 0 <= qx < width):
        fail(f'query (y, x) = ({qy}, {qx}) is outside the {height}x{width} feature map of '
             f'{key.split(".")[0]} (0 <= y < {height}, 0 <= x < {width})')
    sizes = positions.new_tensor([height - 1, width - 1])
    keys_xy = to_image((positions + 1) / 2 * sizes, stride, centre, image_size, input_size)
    refs_xy = to_image((references + 1) / 2 * sizes, stride, centre, image_size, input_size)
    query_xy = to_image(positions.new_tensor([qy, qx]), stride, centre, image_size, input_size)
    weights = attn[:, qy * width + qx]  # (M, Hk*Wk)
    per_group = weights.reshape(groups, heads // groups, -1).mean(1)  # (G, Hk*Wk)
    cell = stride * min(image_size[0] / input_size[0], image_size[1] / input_size[1])
    return dict(
        block=key, query=[qy, qx], query_xy=query_xy.tolist(), feature_size=[height, width],
        stride=stride, cell_px=cell, references_xy=refs_xy.reshape(-1, 2).tolist(),
        groups=[dict(keys_xy=keys_xy[g].reshape(-1, 2).tolist(), weights=per_group[g].tolist())
                for g in range(groups)])


def draw(img: np.ndarray, panels: List[Dict], out: str):
    """One panel per entry, each the size of ``img``, at most PANELS_PER_ROW per row."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    height, width = img.shape[:2]
    cols = min(len(panels), PANELS_PER_ROW)
    rows = -(-len(panels) // cols)
    dpi = 100
    point = 72 / dpi  # points per image pixel
    fig = plt.figure(figsize=(cols * width / dpi, rows * height / dpi), dpi=dpi)
    colors = plt.get_cmap('tab10').colors
    for n, panel in enumerate(panels):
        row, col = divmod(n, cols)
        ax = fig.add_axes((col / cols, 1 - (row + 1) / rows, 1 / cols, 1 / rows))
        ax.imshow(img, extent=(-0.5, width - 0.5, height - 0.5, -0.5), interpolation='nearest')
        ax.set_xlim(-0.5, width - 0.5)
        ax.set_ylim(height - 0.5, -0.5)
        ax.axis('off')
        cell = panel['cell_px']  # a feature-map cell, in image pixels
        refs = np.asarray(panel['references_xy'])
        ax.scatter(refs[:, 0], refs[:, 1], s=(0.12 * cell * point) ** 2, c='white',
                   alpha=0.7, linewidths=0)
        for g, group in enumerate(panel['groups']):
            keys = np.asarray(group['keys_xy'])
            weights = np.asarray(group['weights'])
            diameter = UNIFORM_DIAMETER * np.sqrt(weights * len(weights))
            area = (np.minimum(diameter, MAX_DIAMETER) * cell * point) ** 2
            ax.scatter(keys[:, 0], keys[:, 1], s=area, color=colors[g % len(colors)],
                       alpha=0.75, edgecolors='white', linewidths=0.3)
            ax.text(0.01, 0.99 - 0.075 * (g + 1), f'group {g}', transform=ax.transAxes,
                    color=colors[g % len(colors)], fontsize=8, va='top', fontweight='bold',
                    bbox=dict(facecolor='white', alpha=0.7, linewidth=0, pad=1))
        qx, qy = panel['query_xy']
        ax.scatter([qx], [qy], marker='*', s=(0.9 * cell * point) ** 2, c='white',
                   edgecolors='black', linewidths=0.8, zorder=3)
        ax.text(0.01, 0.99, f'{panel["block"]}  query (y, x) = {tuple(panel["query"])}',
                transform=ax.transAxes, fontsize=8, va='top', color='black',
                bbox=dict(facecolor='white', alpha=0.7, linewidth=0, pad=1))
    fig.savefig(out, dpi=dpi)
    plt.close(fig)


def main(argv: Optional[Sequence[str]] = None):
    args = parse_args(argv)
    img = read_image(args.img)
    model, mean, std, short_side = load_backbone(args.config, args.checkpoint)
    stage, blocks = deformable_blocks(model, args.stage)
    if args.block is not None:
        if args.block not in blocks:
            kinds = model.arch_settings['block_types'][stage]
            kind = kinds[args.block] if 0 <= args.block < len(kinds) else None
            what = f'an {kind} block' if kind else 'not a block of it'
            fail(f'block {args.block} of stage {stage} is {what}; its D blocks are {blocks}')
        blocks = [args.block]

    x = preprocess(img, args.short_side or short_side, mean, std).to(args.device)
    model.to(args.device)
    try:
        with torch.no_grad():
            _, info = model.forward_with_deform_info(x)
    except ValueError as err:  # an input smaller than DAT takes
        fail(f'{args.img}, resized to {tuple(x.shape[-2:])}: {err}')
    stride = PATCH_STRIDE * 2 ** stage
    centre = family_of(type(model)).cell_centre
    panels = [panel_data(info[f'stage{stage}.block{j}'], f'stage{stage}.block{j}',
                         tuple(args.query) if args.query else None, stride, centre,
                         img.shape[:2], tuple(x.shape[-2:])) for j in blocks]
    draw(img, panels, args.out)
    print(f'{len(panels)} panel(s) of {img.shape[1]}x{img.shape[0]} px written to {args.out}')
    if args.dump:
        with open(args.dump, 'w') as f:
            json.dump(dict(image_size=list(img.shape[:2]), input_size=list(x.shape[-2:]),
                           stage=stage, panels=panels), f)
        print(f'coordinates written to {args.dump}')


if __name__ == '__main__':
    main(sys.argv[1:])
