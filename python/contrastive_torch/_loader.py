"""Finds and loads the compiled ops library (contrastive_torch._C) into torch.ops.contrastive."""
import glob
import os

import torch

_loaded = None


def _candidates():
    env = os.environ.get("CONTRASTIVE_TORCH_LIBRARY")
    if env:
        yield env
    here = os.path.dirname(os.path.abspath(__file__))
    for pattern in ("_C*.so", "_C*.pyd", "_C*.dylib"):
        for path in sorted(glob.glob(os.path.join(here, pattern))):
            yield path


def load():
    """Loads the ops library once; returns its path."""
    global _loaded
    if _loaded is not None:
        return _loaded
    tried = []
    for path in _candidates():
        if os.path.isfile(path):
            torch.ops.load_library(path)
            _loaded = path
            return path
        tried.append(path)
    raise ImportError(
        "contrastive_torch: the compiled ops library was not found (looked for "
        "$CONTRASTIVE_TORCH_LIBRARY and contrastive_torch/_C*.so). Build it with "
        "`python3 setup.py build_ext --inplace` in python/ or `pip install ./python`, or with "
        "CMake (target contrastive_torch_ops)" + (f"; tried {tried}" if tried else ""))
