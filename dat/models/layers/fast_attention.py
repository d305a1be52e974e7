"""Fused attention kernels for the fast path of the window and deformable blocks.

The layers call these when :func:`dat.models.layers.use_fast_attention` says so (by default
on CUDA); the plain PyTorch code in the layers stays the reference, and
``tests/test_models/test_fast_path.py`` checks that both give the same numbers.

- Window blocks and small deformable blocks: ``F.scaled_dot_product_attention`` with the
  position bias (plus the window mask) as a float ``attn_mask``. The attention weights are
  not stored for the backward pass.
- Deformable blocks with many keys (``>= FLEX_MIN_KEYS``) on CUDA: FlexAttention, with the
  bilinear sampling of the position table (step 5 of
  :mod:`dat.models.layers.deformable_attention`) done inside the score function, so the
  (B, heads, queries, keys) bias is never materialised. Its gradients reach q, k, v, the
  table and the sampling positions (and so the offsets).
"""
import warnings
from typing import Callable, Optional

import torch
import torch.nn.functional as F

try:
    from torch.nn.attention.flex_attention import flex_attention
except ImportError:  # torch < 2.5
    flex_attention = None

#: FlexAttention is used from this many keys on. Below it, SDPA with a materialised bias
#: is as fast, and FlexAttention's gradients were wrong at 49 keys in a probe (torch 2.11).
FLEX_MIN_KEYS = 256
#: Queries and keys are padded to a multiple of this (FlexAttention's block size); padded
#: keys are masked out in the score function.
FLEX_BLOCK = 128
#: SDPA's memory-efficient kernel wants the mask's rows aligned to this many elements;
#: masks are padded so it does not copy a broadcast mask to full size.
MASK_ALIGN = 16

_compiled_flex: Optional[Callable] = None
_warned = set()


def warn_once(message: str):
    """Warn once per message (outside torch.compile)."""
    if message not in _warned and not torch.compiler.is_compiling():
        _warned.add(message)
        warnings.warn(message, stacklevel=3)


def aligned_mask(mask: torch.Tensor) -> torch.Tensor:
    """The same values, with rows stored at a multiple of ``MASK_ALIGN`` elements."""
    n = mask.shape[-1]
    if n % MASK_ALIGN == 0:
        return mask
    return F.pad(mask, (0, MASK_ALIGN - n % MASK_ALIGN))[..., :n]


def window_sdpa(qkv: torch.Tensor, batch: int, num_heads: int, bias: torch.Tensor,
                mask: Optional[torch.Tensor], dropout_p: float) -> torch.Tensor:
    """Attention inside windows with SDPA.

    Args:
        qkv: (B * nW, N, 3 * C), the output of the ``qkv`` linear layer.
        bias: (heads, N, N) relative position bias.
        mask: (nW, N, N) additive window mask, or None.

    Returns:
        (B * nW, N, C), the heads concatenated (before ``proj``).
    """
    n_windows, N = qkv.shape[:2]
    nW = n_windows // batch
    head_dim = qkv.shape[-1] // (3 * num_heads)
    # Windows go into the head dimension, so one (1, nW * heads, N, N) mask broadcasts
    # over the batch instead of being copied per image.
    q, k, v = qkv.reshape(batch, nW, N, 3, num_heads, head_dim).permute(3, 0, 1, 4, 2, 5) \
        .reshape(3, batch, nW * num_heads, N, head_dim).unbind(0)
    attn_mask = bias[None] if mask is None else bias[None] + mask[:, None]
    attn_mask = aligned_mask(attn_mask.expand(nW, num_heads, N, N)
                             .reshape(1, nW * num_heads, N, N).to(q.dtype))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)
    return out.reshape(batch, nW, num_heads, N, head_dim).permute(0, 1, 3, 2, 4) \
        .reshape(n_windows, N, num_heads * head_dim)


def bilinear_bias_score_mod(table: torch.Tensor, query_y: torch.Tensor,
                            query_x: torch.Tensor, key_y: torch.Tensor, key_x: torch.Tensor,
                            heads_per_group: int, n_keys: Optional[int] = None) -> Callable:
    """A FlexAttention score function that adds the bilinearly sampled table.

    In table pixels (``grid_sample`` with ``align_corners=True``), the displacement of
    query i from key j samples the table at ``iy = query_y[i] + key_y[b, g, j]`` (and
    likewise x), with zeros outside the table, as ``F.grid_sample``'s zero padding.

    Args:
        table: (heads, Th, Tw).
        query_y, query_x: (Nq,), the queries' part of the sampling coordinate.
        key_y, key_x: (B, G, Nk), the keys' part; they carry the gradient to the positions.
        heads_per_group: heads M/G; head h uses group ``h // heads_per_group``.
        n_keys: keys from this index on are padding and get -inf. None: no padding.

    Each tensor that needs a gradient is indexed once inside the function (a FlexAttention
    limit): the four bilinear taps read four shifted copies of a zero-padded table.
    """
    heads, th, tw = table.shape
    padded = F.pad(table, (1, 2, 1, 2))  # zeros: one row/column before, two after
    t00, t01, t10, t11 = (padded[:, a:a + th + 2, b:b + tw + 2].contiguous()
                          for a in (0, 1) for b in (0, 1))

    def score_mod(score, b, h, q_idx, kv_idx):
        g = h // heads_per_group
        iy = (query_y[q_idx] + key_y[b, g, kv_idx]).clamp(-1, th)
        ix = (query_x[q_idx] + key_x[b, g, kv_idx]).clamp(-1, tw)
        y0, x0 = iy.floor(), ix.floor()
        wy, wx = iy - y0, ix - x0
        yi, xi = y0.to(torch.int32) + 1, x0.to(torch.int32) + 1
        bias = (1 - wy) * ((1 - wx) * t00[h, yi, xi] + wx * t01[h, yi, xi]) \
            + wy * ((1 - wx) * t10[h, yi, xi] + wx * t11[h, yi, xi])
        score = score + bias
        if n_keys is not None:
            score = torch.where(kv_idx < n_keys, score, -float('inf'))
        return score

    return score_mod


def bias_coordinates(table: torch.Tensor, positions: torch.Tensor,
                     references: torch.Tensor):
    """Split ``iy = ((r_q - p_k) / 2 + 1) / 2 * (Th - 1)`` into query and key terms.

    Args:
        table: (heads, Th, Tw).
        positions: (B, G, Nk, 2) key positions, (y, x) in [-1, 1].
        references: (Nq, 2) query reference points, (y, x) in [-1, 1].

    Returns:
        ``query_y, query_x`` (Nq,) and ``key_y, key_x`` (B, G, Nk), float32.
    """
    scale_y, scale_x = (table.shape[1] - 1) / 4, (table.shape[2] - 1) / 4
    references, positions = references.float(), positions.float()
    # Four separate tensors: FlexAttention indexes each one once.
    return (references[:, 0] * scale_y, references[:, 1] * scale_x,
            (2 - positions[..., 0]) * scale_y, (2 - positions[..., 1]) * scale_x)


def flex_available(x: torch.Tensor) -> bool:
    """FlexAttention runs forward and backward here (CUDA, torch >= 2.5)."""
    return flex_attention is not None and x.is_cuda


def _flex_fn(compiled: bool) -> Callable:
    global _compiled_flex
    if not compiled or torch.compiler.is_compiling():
        return flex_attention  # traced by the caller's torch.compile, or eager
    if _compiled_flex is None:
        _compiled_flex = torch.compile(flex_attention, dynamic=None)
    return _compiled_flex


def deformable_flex_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                              table: torch.Tensor, positions: torch.Tensor,
                              references: torch.Tensor, scale: float,
                              compiled: bool = True) -> torch.Tensor:
    """softmax(q k^T * scale + phi(table; (r_q - p_k) / 2)) v without materialising the bias.

    Args:
        q, k, v: (B, heads, N, d); keys and values sampled at ``positions``.
        table: (heads, Th, Tw) position table.
        positions: (B, G, N, 2) key positions, (y, x) in [-1, 1].
        references: (N, 2) query reference points.
        scale: logit scale, 1/sqrt(d).
        compiled: use ``torch.compile(flex_attention)`` (needed for speed; eager
            FlexAttention is a slow reference that runs forward-only on CPU).

    Returns:
        (B, heads, N, d).
    """
    n = q.shape[2]
    pad = (-n) % FLEX_BLOCK
    query_y, query_x, key_y, key_x = bias_coordinates(table, positions, references)
    if pad:
        q, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
        query_y, query_x, key_y, key_x = (F.pad(t, (0, pad))
                                          for t in (query_y, query_x, key_y, key_x))
    score_mod = bilinear_bias_score_mod(table.float(), query_y, query_x, key_y, key_x,
                                        q.shape[1] // positions.shape[1],
                                        n_keys=n if pad else None)
    out = _flex_fn(compiled)(q, k, v, score_mod=score_mod, scale=scale)
    return out[:, :, :n] if pad else out
