# mmseg's runtime (logging, visualizer, environment), with DAT and DAT++ registered as mmseg
# backbones and CheckedIoUMetric (the metric of ../datasets/ade20k_dat.py) as a metric. The
# checkpoint hook, which mmseg's schedules set, is set by the schedules here.
_base_ = ['mmseg::_base_/default_runtime.py']

custom_imports = dict(imports=['dat.adapters.mmseg'], allow_failed_imports=False)
