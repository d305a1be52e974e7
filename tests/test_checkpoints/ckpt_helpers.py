"""Files for the checkpoint tests: hostile pickles, 2022-style checkpoints, small configs."""
import argparse
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch
from mini_configs import DAT_ARCH_AS_RELEASED, TINY_CLASSIFIER_CONFIG, TINY_TRAIN_CONFIG

REPO = Path(__file__).resolve().parents[2]

# The scaled-down DAT of TINY_CLASSIFIER_CONFIG, and that classifier with a test set for
# tools/test.py (which refuses a bad checkpoint before it looks at the data).
ARCH = DAT_ARCH_AS_RELEASED
CLS_CONFIG = TINY_CLASSIFIER_CONFIG + """
test_dataloader = dict(batch_size=1, sampler=dict(type='DefaultSampler', shuffle=False),
                       dataset=dict(type='CustomDataset', data_root='nowhere',
                                    pipeline=test_pipeline))
test_evaluator = dict(type='Accuracy')
test_cfg = dict()
"""


class Payload:
    """Unpickling it runs ``touch MARKER``: what a hostile checkpoint does."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


def write_malicious(path, marker, checkpoint):
    """``checkpoint`` (real weights, so that only the payload is wrong) with the payload
    beside them."""
    torch.save(dict(checkpoint, notes=Payload(marker)), path)


def runs_code_when_unpickled(path, marker) -> bool:
    """Load ``path`` with full unpickling in another process: does the marker appear? (So a
    test that sees no marker tested a file that really is hostile.)"""
    code = f'import torch; torch.load({str(path)!r}, weights_only=False)'
    subprocess.run([sys.executable, '-c', code], capture_output=True)
    created = Path(marker).exists()
    if created:
        Path(marker).unlink()
    return created


FAKE_YACS = '''
"""A stand-in for yacs, in a throwaway folder: the 2022 code pickled its yacs config."""
MARKER = {marker!r}


class CfgNode(dict):
    def __init__(self, init_dict=None):
        super().__init__(init_dict or {{}})
        self.__dict__['__immutable__'] = False

    def __setstate__(self, state):  # would run when unpickled with the real class
        open(MARKER, 'w').close()
        self.__dict__.update(state)
'''


def write_2022_checkpoint(path, model_state, tmp_dir, marker):
    """A checkpoint as the 2022 training code saved it: ``model`` plus its optimizer, a yacs
    ``CfgNode`` (of a module that exists only while saving) and an argparse ``Namespace``."""
    root = Path(tmp_dir) / 'throwaway_packages'
    (root / 'yacs').mkdir(parents=True)
    (root / 'yacs' / '__init__.py').write_text('')
    (root / 'yacs' / 'config.py').write_text(FAKE_YACS.format(marker=str(marker)))
    sys.path.insert(0, str(root))
    try:
        from yacs.config import CfgNode
        config = CfgNode({'MODEL': CfgNode({'TYPE': 'dat', 'NAME': 'dat_tiny'}),
                          'TRAIN': CfgNode({'BASE_LR': 1e-3, 'EPOCHS': 300})})
        torch.save({'model': model_state, 'optimizer': {'state': {}, 'param_groups': []},
                    'lr_scheduler': {'t_initial': 300}, 'max_accuracy': 82.0, 'epoch': 299,
                    'config': config, 'args': argparse.Namespace(cfg='configs/dat_tiny.yaml')},
                   path)
    finally:
        sys.path.remove(str(root))
        for name in ('yacs.config', 'yacs'):
            sys.modules.pop(name, None)
    for item in sorted(root.rglob('*'), reverse=True):  # gone: unpickling cannot import it
        item.unlink() if item.is_file() else item.rmdir()
    root.rmdir()


def run(cmd, env=None, timeout=600):
    """Run a tool from the repository root, with the checkout first on PYTHONPATH."""
    env = {**os.environ, 'PYTHONPATH': str(REPO), **(env or {})}
    return subprocess.run([str(c) for c in cmd], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def dedent(text):
    return textwrap.dedent(text).lstrip()


def tiny_training_dir(root):
    """``root`` with the shapes dataset (4 training and 1 validation image per class, 32 px)
    in ``data`` and the tiny quick-start config, reading it, as ``tiny.py``."""
    data = root / 'data'
    result = run([sys.executable, 'tools/dataset_converters/make_shapes_dataset.py', data,
                  '--train', '4', '--val', '1', '--size', '32'])
    assert result.returncode == 0, result.stderr
    (root / 'tiny.py').write_text(TINY_TRAIN_CONFIG.format(repo=REPO, data=data))
    return root
