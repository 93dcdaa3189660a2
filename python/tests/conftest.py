import os
import sys

import pytest
import torch

# The package from this source tree (python/), unless PYTHONPATH already points elsewhere.
_HERE = os.path.dirname(os.path.abspath(__file__))
_PKG = os.path.dirname(_HERE)
if _PKG not in sys.path:
    sys.path.insert(0, _PKG)

import contrastive_torch  # noqa: E402  (loads the ops)
from contrastive_torch._ops import NEW_API as HAS_NEW_API  # noqa: E402  (the package's own gate)

HAS_CUDA = torch.cuda.is_available()


def _has_cuda_kernels():
    if not HAS_CUDA:
        return False
    try:
        return torch._C._dispatch_has_kernel_for_dispatch_key("contrastive::info_nce_fwd", "CUDA")
    except (AttributeError, RuntimeError):  # private API: try the op instead
        try:
            torch.ops.contrastive.info_nce_fwd(torch.ones(2, 2, device="cuda"),
                                               torch.ones(2, 2, device="cuda"),
                                               None, None, 1.0, 0.0, True, 0)
            return True
        except (RuntimeError, NotImplementedError):
            return False


HAS_CUDA_KERNELS = _has_cuda_kernels()

needs_new_api = pytest.mark.skipif(not HAS_NEW_API, reason="needs torch >= 2.4 (torch.library.opcheck, torch.compile)")
needs_cuda = pytest.mark.skipif(not HAS_CUDA_KERNELS, reason="needs a CUDA device and the CUDA kernels")


@pytest.fixture(autouse=True)
def _restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)
