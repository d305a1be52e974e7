"""torch.export with free batch, height and width: one program for every input size.

The window (L, S), neighbourhood (N) and deformable (D) blocks pad and mask while exported,
with size arithmetic that stays symbolic, so ``torch.export.export`` needs no guard on the
size. The exported program is run at 224, at a size that is not a multiple of 32 and at a
detection-like size, against eager mode: scaled-down models (every block kind, the real
strides) in the fast tier, and the whole DAT-T and DAT-T++ classifiers (slow: 40 s and 90 s).
"""
import pytest
import torch
from mini_configs import DAT_ARCH_1X as SMALL_DAT
from mini_configs import DATPP_ARCH_1X as SMALL_DATPP
from torch.export import Dim

from dat.models import DAT, DATPlusPlus

#: batch x height x width: 224, sides that are not multiples of 32, a detection-like size.
SIZES = [(1, 224, 224), (2, 200, 264), (1, 320, 480)]


def build(family):
    torch.manual_seed(0)
    if family == 'dat':
        # Window 7 as in DAT-T: stage 3 is one window at 224 and more at 320 x 480.
        return DAT(SMALL_DAT, img_size=224, window_size=7, out_indices=(0, 1, 2, 3)).eval()
    return DATPlusPlus(SMALL_DATPP, img_size=224, out_indices=(0, 1, 2, 3)).eval()


def assert_exported_equals_eager(model, num_outputs):
    """Export ``model`` once with free batch, height and width, and run the program at
    :data:`SIZES` against eager mode (1e-5); returns the program's outputs at each size."""
    # Batch 2: torch.export would take a batch of 1 for a constant. Sides from 64 px: below,
    # a stage is 1 pixel high or wide, which the exported views do not cover.
    example = torch.randn(2, 3, 224, 224)
    dims = {0: Dim('batch', min=1, max=64), 2: Dim('height', min=64, max=2048),
            3: Dim('width', min=64, max=2048)}
    program = torch.export.export(model, (example, ), dynamic_shapes=(dims, ))
    exported = program.module()
    outputs = []
    for batch, height, width in SIZES:
        x = torch.randn(batch, 3, height, width)
        with torch.no_grad():
            expected, got = model(x), exported(x)
        assert len(got) == num_outputs
        for want, out in zip(expected, got):
            assert out.shape == want.shape
            torch.testing.assert_close(out, want, atol=1e-5, rtol=0)
        outputs.append(got)
    return outputs


@pytest.mark.parametrize('family', ['dat', 'datpp'])
def test_export_free_size(family):
    assert_exported_equals_eager(build(family), num_outputs=4)


class StagesAndLogits(torch.nn.Module):
    """A classifier's four stage outputs and its logits, from one exported program."""

    def __init__(self, classifier):
        super().__init__()
        self.classifier = classifier

    def forward(self, x):
        feats = self.classifier.backbone(x)
        return (*feats, self.classifier.head(self.classifier.neck(feats)))


@pytest.mark.slow
@pytest.mark.parametrize('name', ['dat-tiny_8xb128-amp_in1k', 'datpp-tiny_8xb128-amp_in1k'])
def test_export_released_classifier_free_size(name):
    """Full DAT-T and DAT-T++ classifiers (random weights) exported once, at three sizes."""
    from dat.adapters.mmpretrain import get_model
    from dat.models.layers import attention_layers

    torch.manual_seed(0)
    classifier = get_model(name, pretrained=False, backbone=dict(out_indices=(0, 1, 2, 3)))
    model = StagesAndLogits(classifier).eval()
    # Eager runs the kernels that the program holds (export_kernel): on the CPU, DAT-T++'s
    # eager N and D layers run other kernels, equal to these up to rounding (~5e-5 over the
    # whole network; test_attn_impl compares the kernels).
    for layer in attention_layers(model).values():
        layer.init_attention_impl(layer.export_kernel)
    outputs = assert_exported_equals_eager(model, num_outputs=5)
    assert [got[-1].shape for got in outputs] == [(batch, 1000) for batch, _, _ in SIZES]
