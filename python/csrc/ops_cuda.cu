// CUDA kernels of the contrastive_torch ops (built by setup.py when torch has CUDA and nvcc's
// major version matches torch.version.cuda). Schemas are in ops.cpp.
#include <torch/library.h>

#include "contrastive/torch/info_nce_cuda.cuh"

TORCH_LIBRARY_IMPL(contrastive, CUDA, m) {
  m.impl("info_nce_fwd", &contrastive::libtorch::info_nce_forward_cuda);
  m.impl("info_nce_bwd", &contrastive::libtorch::info_nce_backward_cuda);
  m.impl("nt_xent_fwd", &contrastive::libtorch::nt_xent_forward_cuda);
  m.impl("nt_xent_bwd", &contrastive::libtorch::nt_xent_backward_cuda);
}
