"""tools/analysis_tools/gpu_checks.sh in its CPU smoke mode: every part runs and writes its
files; the benchmark pairs each DAT with the Swin of its size and prints the ratios."""
import json
import os
import subprocess

import pytest


@pytest.mark.slow
def test_smoke_mode_runs_every_part(repo_root, tmp_path):
    env = dict(os.environ, SMOKE='1', OUT=str(tmp_path))
    result = subprocess.run(['bash', 'tools/analysis_tools/gpu_checks.sh'], cwd=repo_root,
                            env=env, capture_output=True, text=True, timeout=1800)
    summary = (tmp_path / 'summary.txt').read_text().splitlines()
    assert result.returncode == 0, '\n'.join(summary) + result.stdout[-3000:]
    parts = [line.split(':')[0] for line in summary if line.startswith('part ')]
    assert parts == ['part env', 'part check', 'part bench-t224', 'part bench-t896',
                     'part bench-s224', 'part bench-b224', 'part bench-tpp224',
                     'part profile', 'part compile']
    assert all(' done in ' in line for line in summary if line.startswith('part '))
    assert summary[-1].startswith('total: ') and summary[-1].endswith('status: 0')

    assert 'python 3' in (tmp_path / 'env.txt').read_text()
    assert (tmp_path / 'check.txt').read_text().splitlines()[-1] == 'ALL OK'
    records = [json.loads(line) for line in (tmp_path / 'bench.jsonl').read_text().splitlines()]
    assert [(r['model'], r['mode'], r['img_size'][0]) for r in records] == [
        ('dat-tiny', 'train', 64), ('dat-tiny', 'inference', 64),
        ('swin-tiny (timm)', 'train', 64), ('swin-tiny (timm)', 'inference', 64),
        ('dat-tiny', 'train', 96), ('swin-tiny (timm)', 'train', 96),
        ('dat-small', 'train', 64), ('swin-small (timm)', 'train', 64),
        ('dat-base', 'train', 64), ('swin-base (timm)', 'train', 64),
        ('datpp-tiny', 'train', 64), ('datpp-tiny', 'inference', 64)]
    ratios = (tmp_path / 'ratios.txt').read_text()
    speed = {r['model'] + r['mode'] + str(r['img_size'][0]): r['img_per_s'] for r in records}
    expected = speed['dat-tinytrain64'] / speed['swin-tiny (timm)train64']
    assert f'dat-tiny vs swin-tiny (timm), train b1 @64x64: speed {expected:.2f}x' in ratios
    expected = speed['datpp-tinyinference64'] / speed['dat-tinyinference64']
    assert f'datpp-tiny vs dat-tiny, inference b1 @64x64: speed {expected:.2f}x' in ratios
    assert len([line for line in ratios.splitlines() if ' vs ' in line]) == 7

    profile = (tmp_path / 'profile.txt').read_text()
    assert '== profile: dat-tiny sdpa train' in profile and 'aten::' in profile
    (compiled, ) = [json.loads(line) for line in
                    (tmp_path / 'compile.jsonl').read_text().splitlines()]
    assert compiled['compile'] is True and compiled['first_step_s'] > 0
