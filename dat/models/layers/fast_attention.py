"""Fused attention kernels for the ``'sdpa'`` and ``'flex'`` kinds of ``attn_impl``.

The layers call these when their resolved kernel (:meth:`.common.AttentionImplMixin.kernel`)
says so; the plain PyTorch code in the layers stays the reference, and
``tests/test_models/test_fast_path.py`` checks that both give the same numbers, forward and
backward.

- ``'sdpa'`` (the default on CUDA): ``F.scaled_dot_product_attention`` with the position
  bias (plus the window mask) as a float ``attn_mask``, in every block. The attention
  weights are not stored for the backward pass. In the deformable blocks the sampled bias
  would be a (B, heads, queries, keys) tensor; past :data:`BIAS_BLOCK_THRESHOLD` elements
  (:data:`TRAINING_BIAS_BLOCK_THRESHOLD` when gradients are needed) it is made and used in
  blocks of query rows (:func:`bias_row_block`), and when gradients are needed each block
  runs under ``torch.utils.checkpoint``, so no bias (nor its sampling grid) is stored for the
  backward either (it is sampled again there, block by block).
- ``'flex'`` (inference): as ``'sdpa'``, except in DAT's deformable blocks with
  ``>= FLEX_MIN_KEYS`` keys when no gradient is needed: those use FlexAttention with the
  bilinear sampling of the position table (step 5 of
  :mod:`dat.models.layers.deformable_attention`) inside the score function, so the bias is
  never materialised. **Not for training**: on an H200 (torch 2.11, fp32, TF32 off) its
  gradient of the sampling positions was 4.2e-2 off at 50 x 76 keys (right at 7 x 7 and
  16 x 17; outputs and the other gradients right to ~3e-5), so it would train the offsets
  wrongly at detection sizes, and it was 3.4x slower than SDPA end to end there. A ``'flex'``
  layer that needs gradients runs the ``'sdpa'`` path instead and warns once
  (:data:`FLEX_TRAINING_WARNING`).

FlexAttention is compiled per shape. To keep the number of compilations bounded over the
many input sizes of multi-scale inference, the token count is padded up to a power of two
(:func:`flex_bucket`) and a block mask skips the padded key blocks (and padded query
blocks), so padding costs no compute in whole blocks and nothing in the result. Each layer
calls it through a :class:`FlexGuard`: when FlexAttention cannot run (no FlexAttention in
this torch), fails to compile, or hits :data:`FLEX_RECOMPILE_LIMIT`, that layer switches to
SDPA for the rest of the run and one warning says why.
"""
import warnings
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from einops import rearrange

try:
    from torch.nn.attention.flex_attention import BlockMask, flex_attention
except ImportError:  # torch < 2.5
    BlockMask = flex_attention = None

#: FlexAttention is used from this many keys on. Below it, SDPA with a materialised bias
#: is as fast, and FlexAttention's gradients were wrong at 49 keys in a probe (torch 2.11).
FLEX_MIN_KEYS = 256
#: FlexAttention's block size; token counts are padded to a power of two of at least
#: ``2 * FLEX_BLOCK`` (see :func:`flex_bucket`).
FLEX_BLOCK = 128
#: At most this many FlexAttention graphs are compiled in a process (torch.compile's own
#: limit, 8, is shared by every layer, stage, bucket and batch size); past it a layer
#: switches to SDPA with a warning instead of falling back to eager FlexAttention, which
#: materialises the full score matrix.
FLEX_RECOMPILE_LIMIT = 32
#: SDPA's memory-efficient kernel wants the mask's rows aligned to this many elements;
#: masks are padded so it does not copy a broadcast mask to full size.
MASK_ALIGN = 16
#: A deformable block's SDPA path makes its sampled position bias in blocks of query rows
#: once the whole bias would have more than this many elements (B * heads * queries * keys;
#: 2**26 is 256 MiB in fp32), and with gradients runs each block under
#: ``torch.utils.checkpoint``. Module-level, so a test can lower it.
BIAS_BLOCK_THRESHOLD = 2 ** 26
#: Where gradients are needed, a deformable block's bias goes into checkpointed blocks from
#: this many elements on (or from :data:`BIAS_BLOCK_THRESHOLD`, if lower): in one piece the
#: bias (16 MiB in fp32 here) and its fp32 sampling grid (B * groups, queries, keys, 2) would
#: be kept for the backward; checkpointed, neither is (they are sampled again there). At
#: 896 px, batch 1, this keeps 2.2 GiB of DAT-T++'s D blocks (stages 1-3) out of its step.
TRAINING_BIAS_BLOCK_THRESHOLD = 2 ** 22
#: About this many bias elements per block (64 MiB in fp32).
BIAS_BLOCK_ELEMENTS = 2 ** 24
#: What a ``'flex'`` deformable layer says (once) when it needs gradients.
FLEX_TRAINING_WARNING = (
    "attn_impl 'flex' is for inference: where gradients are needed the deformable attention "
    'layers run SDPA (FlexAttention\'s gradient of the sampling positions was 4.2e-2 off at '
    '3800 keys on an H200; see dat.models.layers.fast_attention)')

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


def bias_row_block(batch: int, heads: int, queries: int, keys: int,
                   training: bool = False) -> Optional[int]:
    """Query rows per block of the sampled position bias, or None for one piece (a bias of at
    most :data:`BIAS_BLOCK_THRESHOLD` elements; with ``training``, where the blocks are
    checkpointed, at most :data:`TRAINING_BIAS_BLOCK_THRESHOLD`)."""
    threshold = min(BIAS_BLOCK_THRESHOLD, TRAINING_BIAS_BLOCK_THRESHOLD) if training \
        else BIAS_BLOCK_THRESHOLD
    if batch * heads * queries * keys <= threshold:
        return None
    return max(1, min(queries, BIAS_BLOCK_ELEMENTS // (batch * heads * keys)))


def needs_grad(*tensors: torch.Tensor) -> bool:
    """Whether autograd records an op on ``tensors`` here."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def window_sdpa(qkv: torch.Tensor, batch: int, num_heads: int, bias: torch.Tensor,
                mask: Optional[torch.Tensor]) -> torch.Tensor:
    """Attention inside windows with SDPA.

    Args:
        qkv: (B * nW, N, 3 * C), the output of the ``qkv`` linear layer.
        bias: (heads, N, N) relative position bias.
        mask: (nW, N, N) additive window mask, or None.

    Returns:
        (B * nW, N, C), the heads concatenated (before ``proj``).
    """
    N = qkv.shape[1]
    nW = qkv.shape[0] // batch
    # Windows go into the head dimension, so one (1, nW * heads, N, N) mask broadcasts
    # over the batch instead of being copied per image.
    q, k, v = rearrange(qkv, '(b nw) n (three m d) -> three b (nw m) n d', b=batch, three=3,
                        m=num_heads).unbind(0)
    attn_mask = bias[None] if mask is None else bias[None] + mask[:, None]
    attn_mask = aligned_mask(attn_mask.expand(nW, num_heads, N, N)
                             .reshape(1, nW * num_heads, N, N).to(q.dtype))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
    return rearrange(out, 'b (nw m) n d -> (b nw) n (m d)', m=num_heads)


def bilinear_bias_score_mod(table: torch.Tensor, query_y: torch.Tensor,
                            query_x: torch.Tensor, key_y: torch.Tensor, key_x: torch.Tensor,
                            heads_per_group: int) -> Callable:
    """A FlexAttention score function that adds the bilinearly sampled table.

    In table pixels (``grid_sample`` with ``align_corners=True``), the displacement of
    query i from key j samples the table at ``iy = query_y[i] + key_y[b, g, j]`` (and
    likewise x), with zeros outside the table, as ``F.grid_sample``'s zero padding.

    Args:
        table: (heads, Th, Tw).
        query_y, query_x: (Nq,), the queries' part of the sampling coordinate.
        key_y, key_x: (B, G, Nk), the keys' part; they carry the gradient to the positions.
        heads_per_group: heads M/G; head h uses group ``h // heads_per_group``.

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
        return score + bias

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


def flex_bucket(n: int) -> int:
    """The padded token count for ``n`` tokens: the next power of two, at least 256."""
    return max(2 * FLEX_BLOCK, 1 << (n - 1).bit_length())


def prefix_block_mask(n: int, padded: int, device: torch.device) -> 'BlockMask':
    """A FlexAttention block mask over ``padded`` tokens where only the first ``n`` are real:
    padded keys are masked, and key blocks (and query blocks) wholly in the padding are
    skipped. It depends on ``n`` only through tensor values, so it compiles once per
    ``padded``."""
    blocks = padded // FLEX_BLOCK
    n_full, partial = n // FLEX_BLOCK, int(n % FLEX_BLOCK > 0)
    real_query = torch.arange(blocks, device=device) * FLEX_BLOCK < n
    shape = (1, 1, blocks)

    def per_query_block(count: int) -> torch.Tensor:
        return torch.where(real_query, count, 0).to(torch.int32).view(shape)

    partial_index = torch.full((*shape, blocks), n_full, dtype=torch.int32, device=device)
    full_index = torch.arange(blocks, dtype=torch.int32, device=device).expand(
        *shape, blocks).contiguous()
    n_keys = torch.full((), n, dtype=torch.int32, device=device)

    def mask_mod(b, h, q_idx, kv_idx):
        return kv_idx < n_keys

    return BlockMask.from_kv_blocks(per_query_block(partial), partial_index,
                                    per_query_block(n_full), full_index, FLEX_BLOCK,
                                    mask_mod, seq_lengths=(padded, padded))


def _compiled_flex_attention() -> Callable:
    global _compiled_flex
    if _compiled_flex is None:
        # Static shapes: the buckets bound the shapes (dynamic shapes did not compile on
        # the CPU in torch 2.14).
        _compiled_flex = torch.compile(flex_attention, dynamic=False)
    return _compiled_flex


def call_flex_attention(*args, compiled: bool = True, **kwargs) -> torch.Tensor:
    """``flex_attention(*args, **kwargs)``: compiled with :data:`FLEX_RECOMPILE_LIMIT` and
    an error (not an eager fallback) when it is hit; traced as is under the caller's
    ``torch.compile``; eager with ``compiled=False`` (a slow reference)."""
    if not compiled or torch.compiler.is_compiling():
        return flex_attention(*args, **kwargs)
    # The backward is lowered at forward time, so that its compile errors reach FlexGuard.
    with torch._dynamo.config.patch(recompile_limit=FLEX_RECOMPILE_LIMIT,
                                    fail_on_recompile_limit_hit=True), \
            torch._functorch.config.patch(force_non_lazy_backward_lowering=True):
        return _compiled_flex_attention()(*args, **kwargs)


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
    padded = flex_bucket(n)
    pad = padded - n
    # Contiguous, so that each bucket sees one memory layout (another layout, e.g. of a
    # transposed view, would compile another graph).
    q, k, v = (F.pad(t, (0, 0, 0, pad)).contiguous() for t in (q, k, v))
    query_y, query_x, key_y, key_x = (F.pad(t, (0, pad)).contiguous() for t in
                                      bias_coordinates(table, positions, references))
    score_mod = bilinear_bias_score_mod(table.float(), query_y, query_x, key_y, key_x,
                                        q.shape[1] // positions.shape[1])
    out = call_flex_attention(q, k, v, score_mod=score_mod, scale=scale, compiled=compiled,
                              block_mask=prefix_block_mask(n, padded, q.device))
    return out[:, :, :n] if pad else out


class FlexGuard:
    """Runs one layer's FlexAttention call, or says that the layer must use SDPA.

    ``guard(fn, *tensors)`` returns ``fn()``, or None when FlexAttention cannot run for
    ``tensors`` or ``fn`` raised: then this layer uses SDPA from now on (``reason`` says
    why) and one warning per reason is given. Under the caller's ``torch.compile`` ``fn``
    runs unguarded (errors there are the caller's compile errors).
    """

    def __init__(self):
        self.reason: Optional[str] = None

    @staticmethod
    def unsupported(*tensors: torch.Tensor) -> Optional[str]:
        """Why FlexAttention cannot run on ``tensors`` here, or None."""
        if flex_attention is None:
            return f'torch {torch.__version__} has no FlexAttention (torch >= 2.5)'
        return None

    def __call__(self, fn: Callable[[], torch.Tensor],
                 *tensors: torch.Tensor) -> Optional[torch.Tensor]:
        if self.reason is not None:
            return None
        reason = self.unsupported(*tensors)
        if torch.compiler.is_compiling():
            return None if reason else fn()
        if reason is None:
            try:
                return fn()
            except Exception as err:  # noqa: BLE001 - any failure: switch to SDPA, say why
                if type(err).__name__ == 'FailOnRecompileLimitHit':
                    reason = (f'FlexAttention hit its recompile limit '
                              f'(FLEX_RECOMPILE_LIMIT={FLEX_RECOMPILE_LIMIT} graphs)')
                else:
                    reason = f'FlexAttention failed: {type(err).__name__}: ' + \
                        str(err).strip().split('\n')[0][:300]
        self.reason = reason
        warn_once(f"attn_impl 'flex': {reason}; the deformable attention layers where this "
                  'happens use SDPA with a materialised position bias for the rest of the run')
        return None
