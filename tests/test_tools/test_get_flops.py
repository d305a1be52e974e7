import subprocess
import sys

import pytest
from mmengine.config import Config

# The paper's GFLOPs (fvcore) and the 2022 checkpoints' parameter counts.
PAPER = {
    'dat-tiny_8xb128-amp_in1k.py': (224, 4.59, 28_319_138),
    'dat-small_8xb128-amp_in1k.py': (224, 9.01, 49_700_402),
    'dat-base_8xb128-amp_in1k.py': (224, 15.79, 87_881_632),
    'dat-base_8xb24-amp_in1k-384px.py': (384, 49.77, 88_178_272),
}
# DAT++: GFLOPs measured here (fvcore; configs/datpp/README.md) and the release
# checkpoints' parameter counts.
DATPP = {
    'datpp-tiny_8xb128-amp_in1k.py': (224, 4.29, 23_962_876),
    'datpp-base_8xb24-amp_in1k-384px.py': (384, 49.73, 93_690_640),
}


@pytest.mark.parametrize('config', sorted(PAPER) + sorted(DATPP))
def test_flops_and_params_match_the_paper(repo_root, load_tool, config):
    tool = load_tool('analysis_tools/get_flops.py')
    size, gflops, params = {**PAPER, **DATPP}[config]
    model = tool.build_model_from_config(
        Config.fromfile(repo_root / 'configs' / config.split('-')[0] / config))
    n_params, flops, by_operator, skipped = tool.count(model, (size, size))
    assert n_params == params
    assert flops / 1e9 == pytest.approx(gflops, rel=0.01)
    assert by_operator['linear'] > 0.8 * flops  # dominated by the projections and MLPs
    assert 'aten::softmax' in skipped  # element-wise operators are named, not counted


@pytest.mark.slow
def test_cli_prints_counts_and_uncounted_ops(repo_root):
    result = subprocess.run(
        [sys.executable, str(repo_root / 'tools/analysis_tools/get_flops.py'),
         str(repo_root / 'configs/dat/dat-tiny_8xb128-amp_in1k.py'), '--shape', '112', '137'],
        capture_output=True, text=True, check=True, cwd=repo_root)
    assert 'input shape: (1, 3, 112, 137)' in result.stdout
    assert 'params: 28,319,138' in result.stdout
    assert 'not counted: ' in result.stdout and 'aten::gelu' in result.stdout
    # no deprecation noise (mmengine imports pkg_resources to resolve `mmpretrain::` bases)
    assert result.stderr == ''
