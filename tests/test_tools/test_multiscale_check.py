"""tools/analysis_tools/multiscale_check.py and gpu_checks.sh, as far as they run on the CPU."""
import json
import random
import subprocess

import pytest


@pytest.fixture(scope='module')
def tool(load_tool):
    return load_tool('analysis_tools/multiscale_check.py')


def test_sizes_follow_the_multiscale_pipeline(tool):
    rng = random.Random(0)
    sizes = [tool.random_size(rng) for _ in range(300)]
    assert all(h % 32 == 0 and w % 32 == 0 for h, w in sizes)
    assert {min(s) for s in sizes} == set(range(480, 801, 32))  # every short side
    assert max(max(s) for s in sizes) == 1344  # 1333, padded to a multiple of 32
    assert {h > w for h, w in sizes} == {True, False}  # both orientations
    assert len(set(sizes)) > 100
    small = [tool.random_size(rng, 0.1) for _ in range(50)]
    assert all(64 <= min(s) and max(s) <= 160 and s[0] % 32 == s[1] % 32 == 0 for s in small)


def test_cpu_run_reports_and_summary(tool, capsys, tmp_path):
    assert tool.main(['--device', 'cpu', '--iters', '3', '--report-at', '2', '--scale', '0.1',
                      '--batch-size', '1', '--amp', 'none']) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    first, last, summary = records  # stdout holds the JSON lines only
    assert (first['iter'], last['iter']) == (2, 3)
    assert first['size_cache_bytes'] > 0 and first['rss_peak_mib'] > 0
    # 'auto' on the CPU: DAT-T's 12 attention layers run the reference kernel
    assert last['kernels'] == first['kernels'] == {'reference': 12}
    assert (summary['runs'], summary['mode'], summary['ok']) == ('reference', 'train', True)

    path = tmp_path / 'runs.jsonl'
    path.write_text('\n'.join(map(json.dumps, records)) + '\n')
    assert tool.main(['--summarize', str(path)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ['runs', 'mode', 'iter']
    assert [line.split()[2] for line in table[1:3]] == ['2', '3']
    assert table[1].endswith('  reference x12')
    assert table[3].startswith('reference train     -> ok: True')


@pytest.mark.slow
def test_gpu_checks_script_parses(repo_root):
    result = subprocess.run(['bash', '-n', 'tools/analysis_tools/gpu_checks.sh'],
                            cwd=repo_root, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
