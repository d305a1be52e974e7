"""Generate a small image classification dataset of drawn textures in the ImageNet layout.

    python tools/dataset_converters/make_shapes_dataset.py data/shapes \
        [--train 200 --val 50 --size 32]

Every image holds one patch of a procedurally drawn texture whose kind is the class:
stripes at 0, 45, 90 or 135 degrees (each jittered by up to 12 degrees), a checkerboard or
a grid of dots. Colours, period, phase, patch shape (disc or rotated square), size and
position are random; the background is noisy with a few distracting lines. Train and val
images are drawn from different random streams, so val is held out. The result loads with
mmpretrain's ``ImageNet`` / ``CustomDataset``::

    OUT_DIR/
    ├── train/{stripes_0,stripes_45,...}/00000.png ...
    ├── val/{stripes_0,stripes_45,...}/00000.png ...
    └── meta/
        ├── classes.txt       one class name a line, in label order
        ├── train.txt         "stripes_0/00000.png 0" (relative to train/)
        └── val.txt           "stripes_0/00000.png 0" (relative to val/)
"""
import argparse
import math
import os
import os.path as osp

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ('stripes_0', 'stripes_45', 'stripes_90', 'stripes_135', 'checkerboard', 'dots')


def random_colour(rng, avoid=None, min_distance=120):
    """An RGB colour at least ``min_distance`` (L1) away from ``avoid``."""
    while True:
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if avoid is None or sum(abs(a - b) for a, b in zip(colour, avoid)) >= min_distance:
            return colour


def texture(kind, size, period, phase, colours, rng):
    """A (size, size, 3) float image of the texture ``kind``."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    if kind.startswith('stripes_'):
        angle = math.radians(int(kind.split('_')[1]) + rng.uniform(-12, 12))
        # stripes run along ``angle``: the pattern varies across it
        u = -x * math.sin(angle) + y * math.cos(angle)
        on = np.mod(u / period + phase, 1.0) < 0.5
    elif kind == 'checkerboard':
        angle = rng.uniform(0, math.pi / 2)
        u = x * math.cos(angle) + y * math.sin(angle)
        v = -x * math.sin(angle) + y * math.cos(angle)
        on = (np.floor(u / period + phase) + np.floor(v / period + phase)) % 2 == 0
    elif kind == 'dots':
        u = np.mod(x / period + phase, 1.0) - 0.5
        v = np.mod(y / period + phase, 1.0) - 0.5
        on = u ** 2 + v ** 2 < 0.3 ** 2
    else:
        raise ValueError(f'unknown texture {kind!r}')
    return np.where(on[..., None], np.float32(colours[0]), np.float32(colours[1]))


def make_image(kind, size, rng):
    background = random_colour(rng)
    image = Image.new('RGB', (size, size), background)
    draw = ImageDraw.Draw(image)
    for _ in range(rng.integers(0, 3)):  # distractors: thin lines
        points = [tuple(rng.uniform(0, size, 2)) for _ in range(2)]
        draw.line(points, fill=random_colour(rng, avoid=background, min_distance=60), width=1)
    # the textured patch: a disc or a rotated square at a random place
    radius = size * rng.uniform(0.4, 0.6)
    cx, cy = rng.uniform(radius * 0.7, size - radius * 0.7, 2)
    mask = Image.new('L', (size, size), 0)
    if rng.random() < 0.5:
        ImageDraw.Draw(mask).ellipse([cx - radius, cy - radius, cx + radius, cy + radius],
                                     fill=255)
    else:
        a = rng.uniform(0, math.pi / 2)
        corners = [(cx + radius * math.cos(a + k * math.pi / 2),
                    cy + radius * math.sin(a + k * math.pi / 2)) for k in range(4)]
        ImageDraw.Draw(mask).polygon(corners, fill=255)
    first = random_colour(rng)
    colours = (first, random_colour(rng, avoid=first))
    pattern = texture(kind, size, size * rng.uniform(0.2, 0.35), rng.random(), colours, rng)
    inside = np.asarray(mask, dtype=np.float32)[..., None] / 255
    pixels = inside * pattern + (1 - inside) * np.asarray(image, dtype=np.float32)
    pixels += rng.normal(0, rng.uniform(4, 16), pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).round().astype(np.uint8))


def make_split(out_dir, split, per_class, size, seed):
    rng = np.random.default_rng(seed)
    lines = []
    for label, kind in enumerate(CLASSES):
        os.makedirs(osp.join(out_dir, split, kind), exist_ok=True)
        for i in range(per_class):
            name = f'{kind}/{i:05d}.png'
            make_image(kind, size, rng).save(osp.join(out_dir, split, name))
            lines.append(f'{name} {label}')
    with open(osp.join(out_dir, 'meta', f'{split}.txt'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return len(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('out_dir', help='where to write train/, val/ and meta/')
    parser.add_argument('--train', type=int, default=200, help='train images per class')
    parser.add_argument('--val', type=int, default=50, help='val images per class')
    parser.add_argument('--size', type=int, default=32, help='image side in pixels')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    if args.train < 1 or args.val < 1 or args.size < 16:
        parser.error('need --train >= 1, --val >= 1 and --size >= 16')
    os.makedirs(osp.join(args.out_dir, 'meta'), exist_ok=True)
    with open(osp.join(args.out_dir, 'meta', 'classes.txt'), 'w') as f:
        f.write('\n'.join(CLASSES) + '\n')
    # different seeds: val images are never drawn in train
    n_train = make_split(args.out_dir, 'train', args.train, args.size, args.seed * 2 + 1)
    n_val = make_split(args.out_dir, 'val', args.val, args.size, args.seed * 2 + 2)
    print(f'{len(CLASSES)} classes, {n_train} train and {n_val} val images of '
          f'{args.size}x{args.size} -> {args.out_dir}')


if __name__ == '__main__':
    main()
