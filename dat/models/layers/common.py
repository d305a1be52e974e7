"""The choice of attention implementation, and the bounded cache of per-size tensors.

Each attention layer declares what it can run, in the manner of timm's ``fused_attn`` and
NATTEN's backend checks:

- ``attn_kernels``: for each value of ``attn_impl`` that the layer accepts, the kernel that
  it runs. A layer maps a request onto another kernel only where that is a documented
  fallback (the window and DAT++ deformable layers have no FlexAttention kernel, so
  ``'flex'`` runs SDPA there, which is what ``'flex'`` means for a model: FlexAttention where
  a layer has it). A request that a layer does not accept is refused when the layer is built
  (or set), with the layer and what it accepts in the message.
- ``auto_kernels``: what ``'auto'`` runs, by device type (``'cuda'``, ``'cpu'``, ...).

The choice is resolved once per layer and device type (:meth:`AttentionImplMixin.kernel`),
not at every forward, and there is no process-wide switch: the backbone's ``attn_impl``
argument (``model.backbone.attn_impl`` in a config) or :func:`set_attention_impl` on one
model sets it. :func:`attention_kernels` reports which kernel each layer of a model runs.
"""
import weakref
from collections import OrderedDict
from typing import Callable, Dict, Hashable, Mapping, Union

import einops
import torch
import torch.nn as nn

#: The values of ``attn_impl``:
#: ``'auto'``: each layer's best kernel for the device (its ``auto_kernels``).
#: ``'reference'``: plain PyTorch (matmul, softmax, matmul), the numbers of the releases.
#: ``'sdpa'``: ``F.scaled_dot_product_attention`` with the position bias (and masks)
#: materialised as its ``attn_mask``.
#: ``'flex'``: for inference, FlexAttention in the layers that have a FlexAttention kernel
#: (DAT's deformable blocks with many keys, when no gradient is needed: its position gradient
#: was wrong at detection sizes on an H200, so with gradients they run SDPA and warn once;
#: see :mod:`dat.models.layers.fast_attention`), SDPA in the others.
ATTENTION_IMPLS = ('auto', 'reference', 'sdpa', 'flex')

# einops finds its backend for each tensor type (Tensor, Parameter) at its first call and
# caches it; under torch.compile that first call fills the cache and dynamo guards on its
# size, so a compiled model's second call would compile everything again (seen with
# TORCH_LOGS=recompiles). Fill it for both types now.
for _tensor in (torch.zeros(1), nn.Parameter(torch.zeros(1))):
    einops.rearrange(_tensor, 'a -> a')
del _tensor


def check_attention_impl(impl: str) -> str:
    """Return ``impl`` if it is one of :data:`ATTENTION_IMPLS`, else raise a ValueError."""
    if impl not in ATTENTION_IMPLS:
        raise ValueError(f'Unknown attention implementation attn_impl={impl!r}; choose one '
                         f'of {", ".join(map(repr, ATTENTION_IMPLS))}')
    return impl


class AttentionImplMixin:
    """What an attention layer can run, and the kernel it runs on a device.

    A layer class sets :attr:`attn_kernels` and :attr:`auto_kernels`, calls
    :meth:`init_attention_impl` in its constructor and branches on
    ``self.kernel(x.device)`` in its forward.
    """

    #: The accepted values of ``attn_impl`` (besides ``'auto'``), each with the kernel it
    #: runs in this layer.
    attn_kernels: Mapping[str, str] = {'reference': 'reference', 'sdpa': 'sdpa'}
    #: The kernel of ``'auto'`` by device type; ``'reference'`` on device types not listed.
    auto_kernels: Mapping[str, str] = {'cuda': 'sdpa'}

    def init_attention_impl(self, attn_impl: str):
        """Check ``attn_impl`` against this layer's :attr:`attn_kernels` and keep it."""
        check_attention_impl(attn_impl)
        if attn_impl != 'auto' and attn_impl not in self.attn_kernels:
            raise ValueError(
                f'{type(self).__name__} cannot run attn_impl={attn_impl!r}; it runs '
                f'{", ".join(map(repr, ("auto", *self.attn_kernels)))}')
        self.attn_impl = attn_impl
        self._kernels: Dict[str, str] = {}

    def kernel(self, device: Union[torch.device, str]) -> str:
        """The kernel this layer runs on ``device``, resolved once per device type."""
        device_type = torch.device(device).type
        kernel = self._kernels.get(device_type)
        if kernel is None:
            impl = self.attn_impl
            if impl == 'auto':
                impl = self.auto_kernels.get(device_type, 'reference')
            kernel = self.attn_kernels[impl]
            # Not stored while torch.compile traces: the compiled code guards on this dict,
            # and filling it during the first compiled call would recompile the second.
            if not torch.compiler.is_compiling():
                self._kernels[device_type] = kernel
        return kernel


def attention_layers(model: nn.Module) -> Dict[str, AttentionImplMixin]:
    """The attention layers of ``model`` by module name (``'stages.0.blocks.1.attn'``)."""
    return {name: module for name, module in model.named_modules()
            if isinstance(module, AttentionImplMixin)}


def set_attention_impl(model: nn.Module, impl: str) -> Dict[str, str]:
    """Set ``attn_impl`` of every attention layer of ``model`` (a backbone, or a detector or
    segmentor around one); returns the previous values by layer name.

    Every layer is checked before any is changed, so a request that one layer cannot run
    raises (naming the layer) and leaves the model as it was. A backbone's own
    ``attn_impl`` attribute is set too.

        >>> from dat.models import DAT
        >>> from dat.models.layers import attention_kernels, set_attention_impl
        >>> model = DAT('tiny')
        >>> _ = set_attention_impl(model, 'reference')  # e.g. to compare against 'sdpa'
        >>> set(attention_kernels(model, 'cuda').values())
        {'reference'}
    """
    layers = attention_layers(model)
    check_attention_impl(impl)
    for name, layer in layers.items():
        if impl != 'auto' and impl not in layer.attn_kernels:
            raise ValueError(
                f'{name} ({type(layer).__name__}) cannot run attn_impl={impl!r}; it runs '
                f'{", ".join(map(repr, ("auto", *layer.attn_kernels)))}')
    previous = {name: layer.attn_impl for name, layer in layers.items()}
    for layer in layers.values():
        layer.init_attention_impl(impl)
    for module in model.modules():
        if not isinstance(module, AttentionImplMixin) and hasattr(module, 'attn_impl'):
            module.attn_impl = impl
    return previous


def attention_kernels(model: nn.Module,
                      device: Union[torch.device, str, None] = None) -> Dict[str, str]:
    """Which kernel each attention layer of ``model`` runs on ``device`` (by default the
    device of the model's first parameter), by layer name.

        >>> from dat.models import DATPlusPlus
        >>> kernels = attention_kernels(DATPlusPlus('tiny'), 'cpu')
        >>> kernels['stages.0.blocks.0.attn'], kernels['stages.0.blocks.1.attn']
        ('sdpa', 'reference')
    """
    if device is None:
        param = next(model.parameters(), None)
        device = param.device if param is not None else 'cpu'
    return {name: layer.kernel(device) for name, layer in attention_layers(model).items()}


def summarize_kernels(kernels: Mapping[str, str], layers: Mapping[str, nn.Module]) -> str:
    """One line, e.g. ``"'sdpa' (13 NeighborhoodAttention), 'reference' (13 ...)"``."""
    counts: 'OrderedDict[tuple, int]' = OrderedDict()
    for name, kernel in kernels.items():
        key = (kernel, type(layers[name]).__name__)
        counts[key] = counts.get(key, 0) + 1
    if len({kernel for kernel, _ in counts}) == 1:
        return repr(next(iter(counts))[0])
    return ', '.join(f'{kernel!r} ({n} {cls})' for (kernel, cls), n in counts.items())


class SizeCache:
    """A small LRU cache of tensors that depend only on an input size (e.g. window masks),
    shared by every layer that asks for the same key.

    It holds at most ``max_entries`` entries, so its memory does not grow with the number of
    input sizes a run sees (multi-scale training sees a new size nearly every iteration).
    A value is a tensor, a tuple of tensors, or None. While ``torch.compile`` or the ONNX
    exporter traces, :meth:`get` builds the value in the graph instead.
    """

    _instances: 'weakref.WeakSet[SizeCache]' = weakref.WeakSet()

    def __init__(self, max_entries: int):
        self.max_entries = max_entries
        self._entries: 'OrderedDict[Hashable, object]' = OrderedDict()
        SizeCache._instances.add(self)

    @classmethod
    def total_nbytes(cls) -> int:
        """Bytes held by all the size caches of the process."""
        return sum(cache.nbytes() for cache in cls._instances)

    def get(self, key: Hashable, build: Callable[[], object]):
        """The value for ``key``, built by ``build()`` if it is not cached."""
        if torch.compiler.is_compiling() or torch.jit.is_tracing():
            return build()
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        value = self._entries[key] = build()
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return value

    def nbytes(self) -> int:
        """Bytes held by the cached tensors."""
        total = 0
        for value in self._entries.values():
            for tensor in value if isinstance(value, tuple) else (value, ):
                if isinstance(tensor, torch.Tensor):
                    total += tensor.numel() * tensor.element_size()
        return total

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self):
        self._entries.clear()
