# mmseg's runtime (logging, visualizer, environment), with DAT and DAT++ registered as mmseg
# backbones and CheckedIoUMetric (the metric of ../datasets/ade20k_dat.py) as a metric. The
# checkpoint hook, which mmseg's schedules set, is set by the schedules here.
_base_ = ['mmseg::_base_/default_runtime.py']

# dat.apply_mmengine_patches: the libraries' own train/test tools then read checkpoints
# as ours do (mmengine 0.10.7's reader refuses its Runner's checkpoints under torch >= 2.6).
custom_imports = dict(imports=['dat.adapters.mmseg', 'dat.apply_mmengine_patches'],
                      allow_failed_imports=False)
