import os

import torch

import contrastive_torch as ct


def test_loaded_library():
    """The module under test is the one the build asked for (CMake sets the variable)."""
    want = os.environ.get("CONTRASTIVE_TORCH_LIBRARY")
    assert os.path.isfile(ct.library_path)
    if want:
        assert os.path.samefile(ct.library_path, want)
    for op in ("info_nce_fwd", "info_nce_bwd", "nt_xent_fwd", "nt_xent_bwd"):
        assert hasattr(torch.ops.contrastive, op)
