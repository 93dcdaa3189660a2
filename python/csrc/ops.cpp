// The contrastive_torch ops: schemas (TORCH_LIBRARY) and CPU kernels. Forward and backward are
// separate plain ops without autograd; contrastive_torch/_ops.py registers autograd (and fake
// kernels on torch >= 2.4). CUDA kernels are in ops_cuda.cu, built when torch has CUDA.
#include <torch/library.h>

#include "contrastive/torch/info_nce.hpp"
#include "contrastive/torch/regularizers.hpp"

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
  // The gamma-auxiliary loss: the state comes in as tensors and is not modified; new_zeta holds
  // the batch's updated entries (NaN: unvisited) for the caller to write back.
  m.def(
      "gamma_nce_fwd(Tensor a, Tensor b, Tensor ids, Tensor? zeta, Tensor? visited, "
      "float temperature, bool symmetric, float alpha, float beta, int seed, int step, "
      "int rate_source, bool sample_then_update, bool positive_in_normaliser, Tensor? exact_a, "
      "Tensor? exact_b, int reduction) -> (Tensor loss, Tensor info_nce, Tensor rate_loss, "
      "Tensor row_lse, Tensor row_r, Tensor col_lse, Tensor col_r, Tensor new_zeta)");
  m.def(
      "gamma_nce_bwd(Tensor grad, Tensor a, Tensor b, Tensor row_lse, Tensor row_r, "
      "Tensor col_lse, Tensor col_r, float temperature, bool symmetric, "
      "bool positive_in_normaliser, int reduction) -> (Tensor grad_a, Tensor grad_b)");
  // Fused losses: with with_grad the forward also returns the input gradients at upstream 1
  // (empty tensors otherwise); their backward is a multiplication by the upstream gradient.
  m.def(
      "feature_separation_fwd(Tensor a, Tensor b, Tensor a_ind, Tensor b_ind, Tensor a_ind_aug, "
      "Tensor b_ind_aug, float orthogonality_weight, float contrastive_weight, "
      "float uniformity_weight, float temperature, float uniformity_t, bool wang_isola, "
      "bool with_grad) -> (Tensor loss, Tensor grad_a, Tensor grad_b, Tensor grad_a_ind, "
      "Tensor grad_b_ind, Tensor grad_a_ind_aug, Tensor grad_b_ind_aug)");
  m.def(
      "brownian_bridge_loss_fwd(Tensor a, Tensor b, Tensor a_aug, float t, bool random_t, "
      "float t_min, float t_max, int seed, int step, int first_id, Tensor? ids, bool nll_weight, "
      "bool detach_a_aug, bool with_grad) -> (Tensor loss, Tensor grad_a, Tensor grad_b, "
      "Tensor grad_a_aug)");
  m.def(
      "geometric_consistency_fwd(Tensor a, Tensor b, Tensor? a_aug, Tensor? b_aug, "
      "float cross_modal_weight, float in_modal_weight, bool detach_a_aug, bool detach_b_aug, "
      "bool with_grad) -> (Tensor loss, Tensor grad_a, Tensor grad_b, Tensor grad_a_aug, "
      "Tensor grad_b_aug)");
  // Bridge sampler: points (steps = 0, N x D) or trajectories (steps = K, N (K+1) x D).
  m.def(
      "brownian_bridge_sample_fwd(Tensor a, Tensor b, Tensor? noise, int steps, float t, "
      "bool random_t, float t_min, float t_max, bool add_noise, float sigma, bool reproject, "
      "int seed, int step, int first_id, Tensor? ids) -> Tensor");
  m.def(
      "brownian_bridge_sample_bwd(Tensor grad, Tensor a, Tensor b, Tensor? noise, int steps, "
      "float t, bool random_t, float t_min, float t_max, bool add_noise, float sigma, "
      "bool reproject, int seed, int step, int first_id, Tensor? ids) -> (Tensor grad_a, "
      "Tensor grad_b)");
}

TORCH_LIBRARY_IMPL(contrastive, CPU, m) {
  m.impl("info_nce_fwd", &contrastive::libtorch::info_nce_forward_cpu);
  m.impl("info_nce_bwd", &contrastive::libtorch::info_nce_backward_cpu);
  m.impl("nt_xent_fwd", &contrastive::libtorch::nt_xent_forward_cpu);
  m.impl("nt_xent_bwd", &contrastive::libtorch::nt_xent_backward_cpu);
  m.impl("gamma_nce_fwd", &contrastive::libtorch::gamma_nce_forward_cpu);
  m.impl("gamma_nce_bwd", &contrastive::libtorch::gamma_nce_backward_cpu);
  m.impl("feature_separation_fwd", &contrastive::libtorch::feature_separation_forward_cpu);
  m.impl("brownian_bridge_loss_fwd", &contrastive::libtorch::brownian_bridge_loss_forward_cpu);
  m.impl("geometric_consistency_fwd", &contrastive::libtorch::geometric_consistency_forward_cpu);
  m.impl("brownian_bridge_sample_fwd", &contrastive::libtorch::brownian_bridge_sample_forward_cpu);
  m.impl("brownian_bridge_sample_bwd", &contrastive::libtorch::brownian_bridge_sample_backward_cpu);
}
