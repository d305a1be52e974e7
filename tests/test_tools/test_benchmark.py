import json
import subprocess
import sys

import pytest
import torch

FIELDS = {'mode', 'model', 'impl', 'batch_size', 'img_size', 'amp', 'compile', 'img_per_s',
          'ms_per_iter', 'peak_mem_gib', 'rss_peak_gib', 'iters', 'warmup', 'device', 'torch',
          'first_step_s'}
FAST = ['--device', 'cpu', '--batch-size', '1', '--iters', '1', '--warmup', '0',
        '--amp', 'none']


@pytest.fixture(scope='module')
def bench(load_tool):
    return load_tool('analysis_tools/benchmark.py')


def json_lines(text):
    records = [json.loads(line) for line in text.splitlines() if line.strip()]
    for record in records:
        assert set(record) == FIELDS
        assert record['img_per_s'] > 0 and record['ms_per_iter'] > 0
        assert record['first_step_s'] > 0
        assert record['peak_mem_gib'] is None and record['rss_peak_gib'] > 0  # CPU
    return records


def test_arch_and_compare_swin(bench, capsys):
    bench.main(['--arch', 'tiny', '--img-size', '64', '96', '--compare', 'swin'] + FAST)
    records = json_lines(capsys.readouterr().out)
    assert [(r['model'], r['impl'], r['mode']) for r in records] == [
        ('dat-tiny', 'reference', 'train'), ('dat-tiny', 'reference', 'inference'),
        ('swin-tiny (timm)', 'timm', 'train'), ('swin-tiny (timm)', 'timm', 'inference')]
    assert all(r['img_size'] == [64, 96] and r['batch_size'] == 1 and r['amp'] == 'none'
               for r in records)


def test_impl_sdpa_inference_bf16(bench, capsys):
    bench.main(['--arch', 'tiny', '--img-size', '64', '--impl', 'sdpa',
                '--mode', 'inference'] + FAST[:-1] + ['bf16'])
    (record, ) = json_lines(capsys.readouterr().out)
    assert (record['impl'], record['mode'], record['amp']) == ('sdpa', 'inference', 'bf16')
    assert record['img_size'] == [64, 64]


def test_model_datpp_compiled(bench, capsys, monkeypatch):
    """--model datpp builds DAT++; --compile hands the model to torch.compile with the
    chosen backend (what compiling DAT-T++ gives is tests/test_models/test_compile.py's:
    tracing it takes minutes on this CPU, so torch.compile is recorded here, not run)."""
    calls = []

    def compile_(model, **kwargs):
        calls.append((type(model).__name__, kwargs))
        return model
    monkeypatch.setattr(bench.torch, 'compile', compile_)
    bench.main(['--model', 'datpp', '--arch', 'tiny', '--img-size', '64', '--mode', 'train',
                '--compile', '--compile-backend', 'eager'] + FAST)
    (record, ) = json_lines(capsys.readouterr().out)
    assert (record['model'], record['impl'], record['compile']) == (
        'datpp-tiny', 'reference+sdpa', True)
    assert len(calls) == 1 and calls[0][1] == dict(backend='eager'), calls


def test_bad_arguments(bench, capsys):
    with pytest.raises(SystemExit):
        bench.main(['--img-size', '64', '64', '64'])
    assert '--img-size takes H W or a single size' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(['--config', 'x.py', '--compare', 'swin'])
    assert '--compare swin needs --arch' in capsys.readouterr().err


@pytest.mark.slow
def test_config_cli_with_profile(repo_root):
    result = subprocess.run(
        [sys.executable, 'tools/analysis_tools/benchmark.py', '--config',
         'configs/dat/dat-tiny_8xb128-amp_in1k.py', '--img-size', '64', '--mode', 'inference',
         '--profile', '--profile-rows', '5'] + FAST,
        cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (record, ) = json_lines(result.stdout)  # stdout is JSON lines only
    assert record['model'] == 'dat-tiny_8xb128-amp_in1k' and record['mode'] == 'inference'
    assert 'top ops by self_cpu_time_total' in result.stderr
    assert 'aten::' in result.stderr


def test_cpu_defaults_and_each_line_printed_when_measured(bench, capsys, monkeypatch):
    """On the CPU the defaults are fp32 (bf16 autocast is several times slower there), batch
    16 and 10 timed iterations after 2 untimed ones, so that the README's command (DAT-T at
    224, train then inference) takes about a minute on 2 cores; each JSON line is printed
    as soon as its measurement is done. Counted here in iterations and precision."""
    args = bench.parse_args(['--device', 'cpu'])
    assert (args.amp, args.batch_size, args.iters, args.warmup) == ('none', 16, 10, 2)
    assert (args.arch, args.img_size, args.mode) == ('tiny', (224, 224), 'all')

    steps = []
    step = bench.Runner.step

    def counted(runner):
        steps.append((runner.mode, runner.args.amp, runner.x.dtype, runner.x.shape[0]))
        return step(runner)

    measure = bench.measure

    def measure_after_printing(runner, args):
        if runner.mode == 'inference':  # the training line is out already
            (line, ) = capsys.readouterr().out.splitlines()
            assert json.loads(line)['mode'] == 'train'
        return measure(runner, args)

    monkeypatch.setattr(bench.Runner, 'step', counted)
    monkeypatch.setattr(bench, 'measure', measure_after_printing)
    bench.main(['--device', 'cpu', '--img-size', '32'])  # small images, the same defaults
    assert steps == [('train', 'none', torch.float32, 16)] * 12 + \
        [('inference', 'none', torch.float32, 16)] * 12
    (record, ) = json_lines(capsys.readouterr().out)
    assert (record['mode'], record['amp'], record['iters'], record['warmup'],
            record['batch_size']) == ('inference', 'none', 10, 2, 16)
