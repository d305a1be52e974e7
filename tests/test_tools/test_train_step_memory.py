"""tools/analysis_tools/train_step_memory.py: one process per model, one JSON line each."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[2] / 'tools' / 'analysis_tools' / 'train_step_memory.py'


@pytest.mark.slow
def test_measures_each_model_and_the_ratio():
    out = subprocess.run([sys.executable, str(TOOL), 'dat-tiny:reference', 'datpp-tiny:auto',
                          '--img-size', '64'], capture_output=True, text=True, check=True)
    lines = out.stdout.strip().splitlines()
    records = [json.loads(line) for line in lines[:2]]
    assert [(r['model'], r['kernels'], r['img_size'], r['batch_size']) for r in records] == [
        ('dat-tiny:reference', 'reference', 64, 1),
        ('datpp-tiny:auto', 'reference+sdpa', 64, 1)]
    assert all(r['step_growth_gib'] > 0 for r in records)
    ratio = records[1]['step_growth_gib'] / records[0]['step_growth_gib']
    assert lines[2] == f'datpp-tiny:auto / dat-tiny:reference: {ratio:.2f}x the step growth'


def test_bad_model_is_named(capsys):
    spec = importlib.util.spec_from_file_location('train_step_memory', TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    with pytest.raises(SystemExit) as exit_info:
        tool.main(['swin-tiny:sdpa'])
    assert exit_info.value.code == 2
    assert "model 'swin-tiny:sdpa': expected ARCH:IMPL with ARCH one of dat-tiny" in \
        capsys.readouterr().err


@pytest.mark.slow
def test_swin_control():
    """timm's Swin of the same size, the control of issue 21's memory goal."""
    out = subprocess.run([sys.executable, str(TOOL), 'swin-tiny:timm', '--img-size', '64'],
                         capture_output=True, text=True, check=True)
    (record, ) = [json.loads(line) for line in out.stdout.strip().splitlines()]
    assert (record['model'], record['kernels'], record['img_size']) == (
        'swin-tiny:timm', 'timm', 64)
    assert record['step_growth_gib'] > 0


@pytest.mark.parametrize('spec', ['swin-tiny:sdpa', 'dat-tiny:timm', 'swin-huge:timm'])
def test_swin_only_as_timm(spec, capsys):
    spec_ = importlib.util.spec_from_file_location('train_step_memory', TOOL)
    tool = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(tool)
    with pytest.raises(SystemExit):
        tool.parse_args([spec])
    assert f'model {spec!r}: expected ARCH:IMPL' in capsys.readouterr().err
    assert tool.parse_args(['swin-base:timm', 'dat-tiny:sdpa']).models == [
        'swin-base:timm', 'dat-tiny:sdpa']
