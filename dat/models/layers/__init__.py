from .common import (ATTENTION_IMPLS, AttentionImplMixin, SizeCache, attention_kernels,
                     attention_layers, check_attention_impl, set_attention_impl)
from .deformable_attention import DeformableAttention
from .deformable_attention_plusplus import DeformableAttentionPlusPlus
from .neighborhood_attention import NeighborhoodAttention
from .window_attention import WindowAttention

__all__ = ['ATTENTION_IMPLS', 'AttentionImplMixin', 'DeformableAttention',
           'DeformableAttentionPlusPlus', 'NeighborhoodAttention', 'SizeCache',
           'WindowAttention', 'attention_kernels', 'attention_layers', 'check_attention_impl',
           'set_attention_impl']
