"""The choice of attention implementation, and the bounded cache of per-size tensors.

Each attention layer declares what it can run, in the manner of NATTEN's backend checks and
timm's ``fused_attn``:

- ``kernels``: the kernels the layer has (``'reference'`` always, the plain PyTorch code that
  gives the releases' numbers; ``'sdpa'``, built on ``F.scaled_dot_product_attention``).
- one check per kernel, ``can_run_<kernel>(device_type, dtype, grad)``: None where that kernel
  can run on the device type, in the attention's dtype (the autocast dtype under autocast),
  with or without gradients; otherwise the reason why not. No kernel of dat depends on the
  input size: the SDPA kernels take any size (the deformable blocks make their bias in row
  blocks past a size, inside the same kernel).
- ``auto_order``: what ``'auto'`` tries, best first, by device type (``'cuda'``, ``'cpu'``,
  ...); the first kernel whose check passes runs, and ``'reference'`` where none is listed.

A named kernel that cannot run is an error that gives the reason. The choice is made once per
layer and condition (:meth:`AttentionImplMixin.kernel`), not re-derived at every forward,
and there is no process-wide switch: the backbone's ``attn_impl`` argument
(``model.backbone.attn_impl`` in a config) or :func:`set_attention_impl` on one model sets
it. :func:`attention_kernels` reports which kernel each layer runs, from the same checks.
"""
import weakref
from collections import OrderedDict
from typing import Callable, Dict, Hashable, Mapping, Optional, Tuple, Union

import einops
import torch
import torch.nn as nn

#: The values of ``attn_impl``:
#: ``'auto'``: each layer's best kernel for the device (its ``auto_order``).
#: ``'reference'``: plain PyTorch (matmul, softmax, matmul), the numbers of the releases.
#: ``'sdpa'``: ``F.scaled_dot_product_attention`` with the position bias (and masks)
#: materialised as its ``attn_mask``.
ATTENTION_IMPLS = ('auto', 'reference', 'sdpa')

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


def attention_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype the attention of ``x`` runs in: autocast's where it is on, else ``x``'s."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


class AttentionImplMixin:
    """What an attention layer can run, and the kernel it runs.

    A layer class sets :attr:`kernels` and :attr:`auto_order`, has a ``can_run_<kernel>``
    check for each of its kernels, calls :meth:`init_attention_impl` in its constructor and
    branches on ``self.kernel_for(x)`` in its forward.
    """

    #: The kernels of this layer.
    kernels: Tuple[str, ...] = ('reference', 'sdpa')
    #: What ``'auto'`` tries by device type, best first; ``'reference'`` on types not listed.
    auto_order: Mapping[str, Tuple[str, ...]] = {'cuda': ('sdpa', 'reference')}
    #: The kernel that ``torch.export`` traces, for any input size: the one whose views the
    #: exporter can follow without guards on the size (equal to the others up to rounding).
    export_kernel: str = 'reference'

    def can_run_reference(self, device_type: str, dtype: torch.dtype,
                          grad: bool) -> Optional[str]:
        """Plain PyTorch runs anything."""
        return None

    def can_run_sdpa(self, device_type: str, dtype: torch.dtype, grad: bool) -> Optional[str]:
        """``F.scaled_dot_product_attention`` takes floating-point inputs on every device,
        with or without gradients."""
        if not dtype.is_floating_point:
            return f'F.scaled_dot_product_attention takes floating-point inputs, not {dtype}'
        return None

    def init_attention_impl(self, attn_impl: str):
        """Check ``attn_impl`` against this layer's :attr:`kernels` and keep it."""
        check_attention_impl(attn_impl)
        if attn_impl != 'auto' and attn_impl not in self.kernels:
            raise ValueError(
                f'{type(self).__name__} cannot run attn_impl={attn_impl!r}; it runs '
                f'{", ".join(map(repr, ("auto", *self.kernels)))}')
        self.attn_impl = attn_impl
        self._kernels: Dict[tuple, str] = {}

    def why_not(self, kernel: str, device_type: str, dtype: torch.dtype,
                grad: bool) -> Optional[str]:
        """Why ``kernel`` cannot run here (its ``can_run_<kernel>`` check), or None."""
        return getattr(self, f'can_run_{kernel}')(device_type, dtype, grad)

    def kernel(self, device: Union[torch.device, str], dtype: torch.dtype = torch.float32,
               grad: bool = False) -> str:
        """The kernel this layer runs on ``device`` in ``dtype``, with or without gradients;
        chosen from the checks once per condition."""
        device_type = torch.device(device).type
        key = (device_type, dtype, grad, torch.jit.is_tracing())
        kernel = self._kernels.get(key)
        if kernel is None:
            kernel = self._choose(device_type, dtype, grad)
            # Not stored while torch.compile traces: the compiled code guards on this dict,
            # and filling it during the first compiled call would recompile the second.
            if not torch.compiler.is_compiling():
                self._kernels[key] = kernel
        return kernel

    def kernel_for(self, x: torch.Tensor) -> str:
        """The kernel for the input ``x`` (its device, attention dtype, and whether autograd
        records this layer); :attr:`export_kernel` while ``torch.export`` traces."""
        if torch.compiler.is_exporting():
            return self.export_kernel
        grad = torch.is_grad_enabled() and (
            x.requires_grad or any(p.requires_grad for p in self.parameters()))
        return self.kernel(x.device, attention_dtype(x), grad)

    def _choose(self, device_type: str, dtype: torch.dtype, grad: bool) -> str:
        if self.attn_impl != 'auto':
            reason = self.why_not(self.attn_impl, device_type, dtype, grad)
            if reason is not None:
                raise RuntimeError(f'{type(self).__name__} cannot run attn_impl='
                                   f'{self.attn_impl!r} here: {reason}')
            return self.attn_impl
        for kernel in self.auto_order.get(device_type, ('reference', )):
            if self.why_not(kernel, device_type, dtype, grad) is None:
                return kernel
        return 'reference'


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
        if impl != 'auto' and impl not in layer.kernels:
            raise ValueError(
                f'{name} ({type(layer).__name__}) cannot run attn_impl={impl!r}; it runs '
                f'{", ".join(map(repr, ("auto", *layer.kernels)))}')
    previous = {name: layer.attn_impl for name, layer in layers.items()}
    for layer in layers.values():
        layer.init_attention_impl(impl)
    for module in model.modules():
        if not isinstance(module, AttentionImplMixin) and hasattr(module, 'attn_impl'):
            module.attn_impl = impl
    return previous


def attention_kernels(model: nn.Module, device: Union[torch.device, str, None] = None,
                      dtype: torch.dtype = torch.float32,
                      training: bool = False) -> Dict[str, str]:
    """Which kernel each attention layer of ``model`` runs on ``device`` (by default the
    device of the model's first parameter) in ``dtype`` (the autocast dtype under AMP), in
    training (with gradients) or inference, by layer name: the kernels that the layers'
    forwards run under those conditions, at any input size.

        >>> from dat.models import DATPlusPlus
        >>> kernels = attention_kernels(DATPlusPlus('tiny'), 'cpu')
        >>> kernels['stages.0.blocks.0.attn'], kernels['stages.0.blocks.1.attn']
        ('sdpa', 'reference')
    """
    if device is None:
        param = next(model.parameters(), None)
        device = param.device if param is not None else 'cpu'
    return {name: layer.kernel(device, dtype, training)
            for name, layer in attention_layers(model).items()}


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


def is_exporting() -> bool:
    """Whether the forward is being exported (``torch.export``, which torch's ONNX exporter
    runs, or the TorchScript tracer of the legacy ONNX exporter): the sizes then stand for
    any size, so a layer pads and masks whatever they are instead of branching on them."""
    return torch.jit.is_tracing() or torch.compiler.is_exporting()
