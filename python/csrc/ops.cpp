// The contrastive_torch ops: schemas (TORCH_LIBRARY) and CPU kernels. Forward and backward are
// separate plain ops without autograd; contrastive_torch/_ops.py registers autograd (and fake
// kernels on torch >= 2.4). CUDA kernels are in ops_cuda.cu, built when torch has CUDA.
#include <torch/library.h>

#include "contrastive/torch/info_nce.hpp"

TORCH_LIBRARY(contrastive, m) {
  m.def(
      "info_nce_fwd(Tensor a, Tensor b, Tensor? labels_a, Tensor? labels_b, float temperature, "
      "float label_smoothing, bool symmetric, int reduction) -> (Tensor loss, Tensor row_lse, "
      "Tensor col_lse, Tensor row_positives, Tensor col_positives)");
  m.def(
      "info_nce_bwd(Tensor grad, Tensor a, Tensor b, Tensor row_lse, Tensor col_lse, "
      "Tensor row_positives, Tensor col_positives, Tensor? labels_a, Tensor? labels_b, "
      "float temperature, float label_smoothing, bool symmetric, int reduction) -> "
      "(Tensor grad_a, Tensor grad_b)");
  m.def(
      "nt_xent_fwd(Tensor a, Tensor b, Tensor? labels, float temperature, float label_smoothing, "
      "int reduction) -> (Tensor loss, Tensor lse, Tensor positives)");
  m.def(
      "nt_xent_bwd(Tensor grad, Tensor a, Tensor b, Tensor lse, Tensor positives, Tensor? labels, "
      "float temperature, float label_smoothing, int reduction) -> (Tensor grad_a, Tensor grad_b)");
}

TORCH_LIBRARY_IMPL(contrastive, CPU, m) {
  m.impl("info_nce_fwd", &contrastive::torch::info_nce_forward_cpu);
  m.impl("info_nce_bwd", &contrastive::torch::info_nce_backward_cpu);
  m.impl("nt_xent_fwd", &contrastive::torch::nt_xent_forward_cpu);
  m.impl("nt_xent_bwd", &contrastive::torch::nt_xent_backward_cpu);
}
