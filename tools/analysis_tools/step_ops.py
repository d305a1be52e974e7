"""Which ops one training step runs: the copies it makes, and any op without a deterministic
CUDA implementation.

    # copies of a DAT-T 'sdpa' step beside timm's Swin-T, CPU, bf16 autocast, batch 4, 224 px
    python tools/analysis_tools/step_ops.py swin-tiny:timm dat-tiny:sdpa
    # fp32, the largest copies of each model by the op that made them
    python tools/analysis_tools/step_ops.py dat-tiny:sdpa --amp none --top 15

Each model (``ARCH:IMPL`` as in ``train_step_memory.py``: a classifier of the backbone, a
mean pool and a linear head; Swin: timm's own) takes a warm-up step, then one training step
(forward under autocast, cross-entropy, backward, AdamW step) under ``torch.profiler``, in
this process. Reported per model: the number of ``aten::copy_`` calls and the bytes they
write (the destination's size; casts, layout changes, ``.contiguous()``, ``torch.cat``'s
inputs are not counted separately), and the ops of :data:`NONDETERMINISTIC_ON_CUDA` that
ran. With ``--top``, the largest copies grouped by the op that called them.
"""
import argparse
import json
import os
import sys
from collections import Counter, defaultdict

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))

#: The ops that ``torch.use_deterministic_algorithms(True)`` makes throw on CUDA (its
#: docstring's second list, torch 2.14), by the entry of that list, as the aten ops (or the
#: autograd nodes' aten backward ops) a profiler sees. ``tests/test_models/test_determinism.py``
#: pins this table against the docstring.
NONDETERMINISTIC_ON_CUDA = {
    'torch.nn.AvgPool3d': ('aten::avg_pool3d_backward', ),
    'torch.nn.AdaptiveAvgPool2d': ('aten::_adaptive_avg_pool2d_backward', ),
    'torch.nn.AdaptiveAvgPool3d': ('aten::_adaptive_avg_pool3d_backward', ),
    'torch.nn.AdaptiveMaxPool2d': ('aten::adaptive_max_pool2d_backward', ),
    'torch.nn.FractionalMaxPool2d': ('aten::fractional_max_pool2d_backward', ),
    'torch.nn.FractionalMaxPool3d': ('aten::fractional_max_pool3d_backward', ),
    'torch.nn.MaxUnpool1d': ('aten::max_unpool1d', ),
    'torch.nn.MaxUnpool2d': ('aten::max_unpool2d', ),
    'torch.nn.MaxUnpool3d': ('aten::max_unpool3d', ),
    'torch.nn.functional.interpolate': (
        'aten::upsample_linear1d_backward', 'aten::upsample_bilinear2d_backward',
        'aten::_upsample_bilinear2d_aa_backward', 'aten::upsample_bicubic2d_backward',
        'aten::_upsample_bicubic2d_aa_backward', 'aten::upsample_trilinear3d_backward'),
    'torch.nn.ReflectionPad1d': ('aten::reflection_pad1d_backward', ),
    'torch.nn.ReflectionPad2d': ('aten::reflection_pad2d_backward', ),
    'torch.nn.ReflectionPad3d': ('aten::reflection_pad3d_backward', ),
    'torch.nn.NLLLoss': ('aten::nll_loss', 'aten::nll_loss_forward', 'aten::nll_loss2d',
                         'aten::nll_loss2d_forward', 'aten::nll_loss_nd'),
    'torch.nn.CTCLoss': ('aten::_ctc_loss_backward', ),
    'torch.nn.EmbeddingBag': ('aten::_embedding_bag_backward',
                              'aten::_embedding_bag_dense_backward',
                              'aten::_embedding_bag_per_sample_weights_backward'),
    'torch.Tensor.put_': ('aten::put_', 'aten::put'),
    'torch.histc': ('aten::histc', ),
    'torch.bincount': ('aten::bincount', ),
    'torch.median': ('aten::median', ),
    'torch.nn.functional.grid_sample': ('aten::grid_sampler_2d_backward',
                                        'aten::grid_sampler_3d_backward',
                                        'aten::cudnn_grid_sampler_backward'),
    'torch.Tensor.scatter_reduce': ('aten::scatter_reduce', 'aten::scatter_reduce_'),
    'torch.Tensor.resize_': (),  # quantized tensors only
}
#: Ops of the table that throw only in some modes, which dat does not use: NLLLoss (on
#: CUDA it throws in every mode; dat's recipes use soft-target cross-entropy, not
#: ``nll_loss``, in training), EmbeddingBag with mode='max', put_, scatter_reduce with
#: reduce='prod', median with indices. A step that runs one of them is reported.


#: The profiler's names of the dtypes (``input_dtypes``).
DTYPE_NAMES = {'float': 'float32', 'c10::BFloat16': 'bfloat16', 'c10::Half': 'float16',
               'double': 'float64', 'long int': 'int64', 'int': 'int32', 'bool': 'bool',
               'unsigned char': 'uint8'}


#: Ops that only pass a copy on: ``--top`` names the op above them.
PASS_THROUGH = ('aten::to', 'aten::_to_copy', 'aten::contiguous', 'aten::clone',
                'aten::reshape', 'aten::copy_')


def source_line(event) -> str:
    """The innermost line of dat or timm in the Python stack of ``event`` or of the nearest
    op above it that has one (ops of the backward have none: '-')."""
    while event is not None:
        frames = [f for f in (event.stack or []) if '/dat/' in f or 'timm/' in f]
        if frames:
            return frames[0].split('/dat/')[-1].split('timm/')[-1]
        event = event.cpu_parent
    return '-'


def nondeterministic_ops(names) -> list:
    """The ops among ``names`` that the table lists, sorted."""
    listed = {op for ops in NONDETERMINISTIC_ON_CUDA.values() for op in ops}
    return sorted(set(names) & listed)


def build(spec: str, img_size: int):
    """The model of ``ARCH:IMPL`` and its forward (image -> logits)."""
    import torch.nn as nn

    from dat.models import DAT, DATPlusPlus
    family, _, rest = spec.partition('-')
    arch, _, impl = rest.partition(':')
    if family == 'swin':
        import timm
        model = timm.create_model(f'swin_{arch}_patch4_window7_224', pretrained=False,
                                  img_size=img_size).train()
        return model, model
    cls = DATPlusPlus if family == 'datpp' else DAT
    backbone = cls(arch, img_size=img_size, attn_impl=impl)
    head = nn.Linear(backbone.num_features[-1], 1000)
    model = nn.ModuleDict(dict(backbone=backbone, head=head)).train()
    return model, lambda x: head(backbone(x)[-1].mean((2, 3)))


def profile_step(spec: str, img_size: int, batch_size: int, amp: str, top: int = 0) -> dict:
    """One model's profiled training step."""
    import torch
    import torch.nn.functional as F
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    model, forward = build(spec, img_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch_size, 3, img_size, img_size)
    # Soft targets, as the recipes' mixup and cutmix give (no nll_loss).
    labels = torch.rand(batch_size, 1000).softmax(-1)

    def step():
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=amp == 'bf16'):
            loss = F.cross_entropy(forward(x), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True,
                 with_stack=bool(top)) as prof:
        step()
    events = prof.events()
    copies, copy_bytes = 0, 0
    by_caller = defaultdict(lambda: [0, 0])
    for event in events:
        if event.name != 'aten::copy_':
            continue
        shape = event.input_shapes[0] if event.input_shapes else []
        dtype = event.input_dtypes[0] if event.input_dtypes else 'float'
        numel = 1
        for n in shape:
            numel *= n
        nbytes = numel * getattr(torch, DTYPE_NAMES.get(dtype, 'float32')).itemsize
        copies += 1
        copy_bytes += nbytes
        if top:
            parent = event.cpu_parent
            while parent is not None and parent.name in PASS_THROUGH:
                parent = parent.cpu_parent
            key = f'{parent.name if parent else "-"} @ {source_line(event)}'
            by_caller[key][0] += 1
            by_caller[key][1] += nbytes
    names = Counter(event.name for event in events)
    record = dict(model=spec, img_size=img_size, batch_size=batch_size, amp=amp,
                  copy_calls=copies, copy_mib=round(copy_bytes / 2**20, 1),
                  nondeterministic_on_cuda=nondeterministic_ops(names),
                  grid_sampler_backward=names.get('aten::grid_sampler_2d_backward', 0),
                  torch=torch.__version__)
    if top:
        largest = sorted(by_caller.items(), key=lambda kv: -kv[1][1])[:top]
        record['largest_copies'] = [dict(caller=k, calls=c, mib=round(b / 2**20, 1))
                                    for k, (c, b) in largest]
    return record


def main(argv=None):
    parser = argparse.ArgumentParser(description='Copies and nondeterministic ops of a '
                                     'training step (CPU profiler)')
    parser.add_argument('models', nargs='+', metavar='ARCH:IMPL',
                        help='e.g. swin-tiny:timm dat-tiny:sdpa (the first is the baseline '
                        'of the ratios)')
    parser.add_argument('--img-size', type=int, default=224)
    parser.add_argument('--batch-size', type=int, default=4)
    parser.add_argument('--amp', choices=('bf16', 'none'), default='bf16')
    parser.add_argument('--top', type=int, default=0,
                        help='also list the N largest copies by calling op and source line')
    args = parser.parse_args(argv)
    records = []
    for spec in args.models:
        record = profile_step(spec, args.img_size, args.batch_size, args.amp, args.top)
        records.append(record)
        print(json.dumps(record), flush=True)
    for record in records[1:]:
        base = records[0]
        print(f'{record["model"]} / {base["model"]}: '
              f'{record["copy_calls"] / base["copy_calls"]:.2f}x the copy calls, '
              f'{record["copy_mib"] / base["copy_mib"]:.2f}x the copied bytes')
    return 0


if __name__ == '__main__':
    sys.exit(main())
