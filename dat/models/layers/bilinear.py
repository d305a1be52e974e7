"""Bilinear sampling for the deformable blocks without ``grid_sample``: gathered rows for the
keys and values, two GEMMs for the position bias.

Both equal ``F.grid_sample(..., mode='bilinear', padding_mode='zeros', align_corners=True)``
exactly (the same taps and weights; float64 to rounding), forward and backward, and neither
differentiates ``grid_sample``, which has no deterministic CUDA backward and whose backward
into a small position table is a storm of atomic adds there.

Bilinear weights factor per axis. A point at ``u`` pixels along an axis of ``n`` cells has
the weight ``1 - f`` on cell ``floor(u)`` and ``f = u - floor(u)`` on the next one; a cell
outside ``0..n-1`` has no weight, which is the zero padding. In 2-D the weight of cell
``(ty, tx)`` is ``a_y[ty] * a_x[tx]``.

- :func:`sample_rows`: the four taps of each sampling position are rows of the channels-last
  (B, H, W, C) map seen as (B * H * W * G, C / G) rows, one per group, read with
  ``index_select`` (its backward is an ``index_add``, deterministic on CUDA under
  ``torch.use_deterministic_algorithms``). No channels-first copy of the map is made.
- :func:`separable_position_bias`: the deformable blocks' queries lie on a grid, so the table
  coordinate of query (i, j) and key k splits into ``iy(i, k)`` and ``ix(j, k)``, and

      bias[b, h, (i, j), k] = sum_ty sum_tx a_y[b, g, k, i, ty] T[h, ty, tx] a_x[b, g, k, j, tx]

  with g the head's offset group. It is computed as two batched GEMMs: over ty with the
  table as the weight matrix (so the table's gradient is a GEMM too, not a scatter), then
  over tx per key. Counts at DAT-T's shapes are in ``docs/benchmarks.md``
  (``tools/analysis_tools/bias_cost.py``).
"""
from typing import Tuple

import torch
from einops import rearrange


def axis_weights(coords: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear weights of the ``size`` cells of an axis for points at ``coords`` (in cell
    units), ``(*coords.shape, size)``; zero for cells outside the axis. The gradient is that
    of ``grid_sample``'s (``-1`` on the lower cell, ``+1`` on the upper) also at integers."""
    lower = coords.floor()
    frac = (coords - lower)[..., None]
    offset = torch.arange(size, dtype=coords.dtype, device=coords.device) - lower[..., None]
    zero = torch.zeros((), dtype=coords.dtype, device=coords.device)
    return torch.where(offset == 0, 1 - frac, torch.where(offset == 1, frac, zero))


def to_pixels(coords: torch.Tensor, size: int) -> torch.Tensor:
    """``grid_sample``'s unnormalisation with ``align_corners=True``: [-1, 1] -> [0, size-1]."""
    return (coords + 1) * 0.5 * (size - 1)


def sample_rows(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Sample each group's channels of ``x`` at its positions, bilinearly with zeros outside.

    Args:
        x: (B, H, W, C) channels-last map; group g owns channels ``g*C/G .. (g+1)*C/G - 1``.
        positions: (B, G, Hk, Wk, 2), (y, x) in [-1, 1] with ``align_corners=True``.

    Returns:
        (B, Hk * Wk, C) in ``x``'s dtype: key n holds every group's sample at its position n.
    """
    B, H, W, C = x.shape
    G = positions.shape[1]
    pos = rearrange(positions, 'b g hk wk yx -> b (hk wk) g yx')
    iy, ix = to_pixels(pos[..., 0], H), to_pixels(pos[..., 1], W)
    y0, x0 = iy.floor(), ix.floor()
    fy, fx = (iy - y0)[..., None], (ix - x0)[..., None]
    # The taps (y0, x0), (y0, x0 + 1), (y0 + 1, x0), (y0 + 1, x0 + 1): (B, N, G, 4).
    ys = y0[..., None] + torch.tensor([0, 0, 1, 1], dtype=y0.dtype, device=y0.device)
    xs = x0[..., None] + torch.tensor([0, 1, 0, 1], dtype=x0.dtype, device=x0.device)
    weights = torch.cat([(1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx], -1)
    inside = (ys >= 0) & (ys <= H - 1) & (xs >= 0) & (xs <= W - 1)
    weights = torch.where(inside, weights, torch.zeros_like(weights)).to(x.dtype)
    batch = torch.arange(B, device=x.device).view(B, 1, 1, 1)
    group = torch.arange(G, device=x.device).view(1, 1, G, 1)
    rows = ((batch * H + ys.clamp(0, H - 1).long()) * W + xs.clamp(0, W - 1).long()) * G + group
    taps = x.reshape(B * H * W * G, C // G).index_select(0, rows.reshape(-1))
    taps = taps.view(*rows.shape, C // G)  # (B, N, G, 4, C / G)
    return (taps * weights[..., None]).sum(-2).reshape(B, -1, C)


def bias_axis_weights(query: torch.Tensor, keys: torch.Tensor, size: int) -> torch.Tensor:
    """``a`` of one axis: (G, B, Nk, Nq, size) weights of the table's cells along the axis
    for the displacements ``(query - key) / 2`` (``query`` (Nq,), ``keys`` (B, G, Nk))."""
    # Keys made (G, B, Nk)-contiguous first (a copy of a few hundred numbers), so that the
    # weights come out in the layout that the bias GEMMs read without a copy.
    keys = keys.permute(1, 0, 2).contiguous()
    displacement = (query[None, None, None, :] - keys[..., None]) * 0.5
    return axis_weights(to_pixels(displacement, size), size)


def separable_position_bias(table: torch.Tensor, query_axes: Tuple[torch.Tensor, torch.Tensor],
                            positions: torch.Tensor) -> torch.Tensor:
    """The position bias of a deformable block, without ``grid_sample``.

    Args:
        table: (M, Th, Tw) position table; head h belongs to offset group ``h // (M / G)``.
        query_axes: ``(ys, xs)``, the queries' coordinates in [-1, 1] along each axis of their
            (Hq, Wq) grid (query (i, j) sits at ``(ys[i], xs[j])``).
        positions: (B, G, Nk, 2) key positions, (y, x) in [-1, 1].

    Returns:
        (B, G, M / G, Hq, Wq, Nk) in the positions' dtype, at least float32 (the GEMMs
        run in float32 also under autocast): ``reshape(B, M, Hq * Wq, Nk)`` is the bias
        that ``grid_sample`` samples from the table at ``(query - key) / 2``.
    """
    ys, xs = query_axes
    B, G, Nk = positions.shape[:3]
    M, Th, Tw = table.shape
    m = M // G
    dtype = torch.promote_types(positions.dtype, torch.float32)
    with torch.autocast(positions.device.type, enabled=False):
        positions, ys, xs = positions.to(dtype), ys.to(dtype), xs.to(dtype)
        a_y = bias_axis_weights(ys, positions[..., 0], Th)  # (G, B, Nk, Hq, Th)
        a_x = bias_axis_weights(xs, positions[..., 1], Tw)  # (G, B, Nk, Wq, Tw)
        Hq, Wq = a_y.shape[3], a_x.shape[3]
        # Over ty, with each group's table as the weight: (G, B*Nk*Hq, Th) @ (G, Th, m*Tw).
        weight = rearrange(table.to(dtype), '(g m) ty tx -> g ty (m tx)', g=G)
        rows = torch.bmm(a_y.reshape(G, B * Nk * Hq, Th), weight)
        if torch.compiler.is_exporting():
            # The same products, with the query rows and the heads as axes of their own:
            # joined (Hq * m), the exporter would guard on a divisibility of the sizes that
            # it cannot prove (m * Tw by m * Hq).
            bias = torch.matmul(rows.view(G, B * Nk, Hq, m, Tw),
                                a_x.reshape(G, B * Nk, 1, Wq, Tw).transpose(-1, -2))
            return rearrange(bias, 'g (b k) i m j -> b g m i j k', b=B)
        # Over tx, per (group, image, key): (G*B*Nk, Hq*m, Tw) @ (G*B*Nk, Tw, Wq).
        bias = torch.bmm(rows.view(G * B * Nk, Hq * m, Tw),
                         a_x.reshape(G * B * Nk, Wq, Tw).transpose(1, 2))
    return rearrange(bias, '(g b k) (i m) j -> b g m i j k', g=G, b=B, m=m)
