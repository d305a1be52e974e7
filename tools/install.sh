#!/usr/bin/env bash
# One-command install of the dat toolbox and its whole stack into the current Python.
#
#   bash tools/install.sh
#
# Safe to run again: every step first checks whether its result is already there.
# mmcv 2.1.0 only ships as source, so it is built once (with its compiled ops) into a
# wheel cache outside the repository and reused from there.
#
# Environment:
#   PYTHON            interpreter to install into (default: python3)
#   DAT_CACHE_DIR     wheel cache (default: ${XDG_CACHE_HOME:-~/.cache}/dat)
#   FORCE_CUDA=1      build the CUDA ops even when no GPU is visible (needs nvcc)
#   TORCH_CUDA_ARCH_LIST, MAX_JOBS   passed to the mmcv build as usual
#   DAT_SKIP_TORCH=1  keep the torch that is installed (e.g. a GPU machine's own build)
set -euo pipefail

PYTHON=${PYTHON:-python3}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${DAT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dat}
MMCV_VERSION=2.1.0
PIP=("$PYTHON" -m pip --disable-pip-version-check)
STEP=""

step() { STEP=$1; echo "==> [install] $1"; }
on_error() {
  local rc=$?
  echo "!! [install] step failed: '$STEP' (exit code $rc)." >&2
  echo "!! [install] the output above says why; fix it and run 'bash tools/install.sh' again." >&2
  exit "$rc"
}
trap on_error ERR

# Exit 0 when every requirement in the given files is installed at a matching version.
requirements_met() {
  "$PYTHON" - "$@" <<'EOF'
import sys
from importlib import metadata
from packaging.requirements import Requirement

for path in sys.argv[1:]:
    for line in open(path):
        line = line.split('#')[0].strip()
        if not line or line.startswith('-'):
            continue
        req = Requirement(line)
        try:
            version = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            sys.exit(1)
        if version.split('+')[0] not in req.specifier and not req.specifier.contains(version):
            sys.exit(1)
EOF
}

step "check python and pip"
"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 9), sys.version' \
  || { echo "Python >= 3.9 is required" >&2; false; }
"$PYTHON" -c 'import packaging' 2>/dev/null || "${PIP[@]}" install -q packaging

step "torch and torchvision"
if [[ "${DAT_SKIP_TORCH:-0}" == 1 ]] || requirements_met "$ROOT/requirements/torch.txt"; then
  echo "    already installed: torch $("$PYTHON" -c 'import torch; print(torch.__version__)')"
else
  "${PIP[@]}" install -r "$ROOT/requirements/torch.txt"
fi

step "mmcv $MMCV_VERSION with compiled ops"
read -r TORCH_TAG WANT_CUDA < <("$PYTHON" - <<'EOF'
import os, shutil, torch
cuda = os.environ.get('FORCE_CUDA') == '1' or (
    torch.cuda.is_available() and shutil.which('nvcc') is not None)
tag = torch.__version__.replace('+', '-')
if cuda:
    arch = os.environ.get('TORCH_CUDA_ARCH_LIST', 'native').replace(' ', '_').replace(';', '_')
    tag += f'-cuda{torch.version.cuda}-arch{arch}'
else:
    tag += '-cpu'
print(tag, int(cuda))
EOF
)
WHEEL_DIR="$CACHE/wheels/mmcv-$MMCV_VERSION-torch$TORCH_TAG"
mmcv_ops_ok() {
  "$PYTHON" - "$WANT_CUDA" <<'EOF' 2>/dev/null
import sys
import mmcv, mmcv.ops, torch
from mmcv.ops import nms
assert mmcv.__version__ == '2.1.0', mmcv.__version__
boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.]])
nms(boxes, torch.tensor([0.9, 0.8]), 0.5)
if sys.argv[1] == '1':
    nms(boxes.cuda(), torch.tensor([0.9, 0.8]).cuda(), 0.5)
EOF
}
if mmcv_ops_ok; then
  echo "    already installed and its ops load"
else
  if ! ls "$WHEEL_DIR"/mmcv-*.whl >/dev/null 2>&1; then
    echo "    no cached wheel in $WHEEL_DIR: building from source (about 10 minutes on 2 cores)"
    BUILD=$(mktemp -d)
    # mmcv's setup.py needs pkg_resources and bdist_wheel from an older setuptools. They are
    # put on PYTHONPATH for the build alone; the environment's own setuptools is left as is.
    "${PIP[@]}" install -q --target "$BUILD/buildtools" "setuptools<70" wheel
    export PYTHONPATH="$BUILD/buildtools${PYTHONPATH:+:$PYTHONPATH}"
    "${PIP[@]}" download -q --no-deps --no-binary mmcv --no-build-isolation \
      -d "$BUILD" "mmcv==$MMCV_VERSION"
    tar -xzf "$BUILD/mmcv-$MMCV_VERSION.tar.gz" -C "$BUILD"
    # torch >= 2.10 headers need C++20; mmcv 2.1.0 asks for C++14/17.
    sed -i -e 's/-std=c++14/-std=c++20/g' -e 's/-std=c++17/-std=c++20/g' \
      "$BUILD/mmcv-$MMCV_VERSION/setup.py"
    if [[ "$WANT_CUDA" == 1 ]]; then export FORCE_CUDA=1; fi
    MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
      "${PIP[@]}" wheel --no-deps --no-build-isolation -w "$BUILD/dist" "$BUILD/mmcv-$MMCV_VERSION"
    mkdir -p "$WHEEL_DIR"
    cp "$BUILD"/dist/mmcv-*.whl "$WHEEL_DIR/"
    unset PYTHONPATH
    rm -rf "$BUILD"
  fi
  echo "    installing $(ls "$WHEEL_DIR"/mmcv-*.whl)"
  "${PIP[@]}" install --no-deps --force-reinstall "$WHEEL_DIR"/mmcv-*.whl
  # mmcv's own runtime requirements (mmengine, addict, yapf, opencv, ...)
  "${PIP[@]}" install -q addict packaging Pillow pyyaml yapf opencv-python \
    "$(grep '^mmengine' "$ROOT/requirements/mminstall.txt")"
  mmcv_ops_ok || { echo "mmcv was installed but 'import mmcv.ops' fails" >&2; false; }
fi

step "OpenMMLab libraries, timm, einops and test tools"
REQS=(requirements/runtime.txt requirements/mminstall.txt requirements/optional.txt requirements/tests.txt)
if requirements_met "${REQS[@]/#/$ROOT/}"; then
  echo "    already installed"
else
  "${PIP[@]}" install $(printf -- '-r %s ' "${REQS[@]/#/$ROOT/}")
fi

step "mim (openmim, without opendatalab: see requirements/mim.txt)"
if requirements_met "$ROOT/requirements/mim.txt"; then
  echo "    already installed"
else
  "${PIP[@]}" install --no-deps "$(grep '^openmim' "$ROOT/requirements/mim.txt")"
  "${PIP[@]}" install $(grep -v -e '^#' -e '^openmim' "$ROOT/requirements/mim.txt")
fi

step "the dat package (editable)"
# (run from / so that the checkout itself is not on sys.path; dat/.mim links the configs,
# tools and model-index.yml for mim and `dat::` config paths, and is made by the install)
if [[ -e "$ROOT/dat/.mim/configs" ]] \
  && (cd / && "$PYTHON" -c 'import dat, os, sys; sys.exit(os.path.dirname(os.path.dirname(dat.__file__)) != sys.argv[1])' "$ROOT") 2>/dev/null; then
  echo "    already installed from $ROOT"
else
  "${PIP[@]}" install --no-deps --no-build-isolation -e "$ROOT"
fi

step "check the stack imports"
cd /
"$PYTHON" - <<'EOF'
import mmcv, mmcv.ops, mmdet, mmengine, mmpretrain, mmseg, timm, torch
import dat
print(f'    torch {torch.__version__}, mmcv {mmcv.__version__}, mmengine {mmengine.__version__}, '
      f'mmpretrain {mmpretrain.__version__}, mmdet {mmdet.__version__}, mmseg {mmseg.__version__}, '
      f'timm {timm.__version__}, dat {dat.__version__}')
EOF
echo "==> [install] done"
