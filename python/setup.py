"""Builds contrastive_torch._C with torch.utils.cpp_extension.

    cd python && /usr/bin/python3 setup.py build_ext --inplace        # in place, for PYTHONPATH
    pip install --no-build-isolation ./python                        # into a (venv) site

The C++ library is header-only: ../include (this repository) or $CONTRASTIVE_INCLUDE_DIR, and
Eigen 3.4 from $EIGEN3_INCLUDE_DIR or /usr/include/eigen3. The CUDA kernels (csrc/ops_cuda.cu)
are built when torch has CUDA and nvcc's major version matches torch.version.cuda; set
CONTRASTIVE_TORCH_CUDA=0 to skip them or =1 to require them.
"""
import os
import re
import subprocess
import sys

from setuptools import setup

import torch
from torch.utils import cpp_extension

HERE = os.path.dirname(os.path.abspath(__file__))


def _include_dirs():
    inc = os.environ.get("CONTRASTIVE_INCLUDE_DIR", os.path.join(HERE, "..", "include"))
    if not os.path.isfile(os.path.join(inc, "contrastive", "contrastive.hpp")):
        sys.exit(f"setup.py: contrastive headers not found in {inc} (set CONTRASTIVE_INCLUDE_DIR)")
    eigen = os.environ.get("EIGEN3_INCLUDE_DIR")
    candidates = [eigen] if eigen else ["/usr/include/eigen3", "/usr/local/include/eigen3"]
    for e in candidates:
        if e and os.path.isfile(os.path.join(e, "Eigen", "Core")):
            return [os.path.abspath(inc), e]
    sys.exit("setup.py: Eigen 3.4 not found (apt-get install libeigen3-dev, or set EIGEN3_INCLUDE_DIR)")


def _nvcc_major():
    home = cpp_extension.CUDA_HOME
    if not home:
        return None
    try:
        out = subprocess.run([os.path.join(home, "bin", "nvcc"), "--version"], check=True,
                             capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    m = re.search(r"release (\d+)\.", out)
    return int(m.group(1)) if m else None


def _want_cuda():
    env = os.environ.get("CONTRASTIVE_TORCH_CUDA")
    if env == "0":
        return False
    ok = torch.version.cuda is not None and _nvcc_major() == int(torch.version.cuda.split(".")[0])
    if env == "1" and not ok:
        sys.exit(f"setup.py: CONTRASTIVE_TORCH_CUDA=1 but torch.version.cuda={torch.version.cuda} "
                 f"and nvcc major={_nvcc_major()} (CUDA_HOME={cpp_extension.CUDA_HOME})")
    if not ok and torch.version.cuda is not None:
        print("setup.py: building without the CUDA kernels (nvcc missing or its major version "
              "differs from torch.version.cuda)", file=sys.stderr)
    return ok


cxx = ["-std=c++17", "-O3", "-fopenmp", "-Wno-deprecated-declarations"]
sources = ["csrc/ops.cpp"]
ext_cls = cpp_extension.CppExtension
extra = {"cxx": cxx}
if _want_cuda():
    ext_cls = cpp_extension.CUDAExtension
    sources.append("csrc/ops_cuda.cu")
    extra["nvcc"] = ["-std=c++17", "-O3", "--expt-relaxed-constexpr"]

setup(
    name="contrastive_torch",
    version="0.1.0",
    description="PyTorch ops and modules for the contrastive C++ losses",
    packages=["contrastive_torch"],
    ext_modules=[ext_cls("contrastive_torch._C", sources, include_dirs=_include_dirs(),
                         extra_compile_args=extra, extra_link_args=["-fopenmp"])],
    cmdclass={"build_ext": cpp_extension.BuildExtension},
    zip_safe=False,
)
