#ifndef CONTRASTIVE_TESTS_CUDA_BLOCK_SWEEP_KERNELS_HPP
#define CONTRASTIVE_TESTS_CUDA_BLOCK_SWEEP_KERNELS_HPP

// Host functions (built by nvcc in block_sweep_kernels.cu) that run the blocked sweep of
// cuda/detail/block_sweep.cuh through the public InfoNCE / NT-Xent entry points, and the argument
// checks of the CUDA path, returning plain values to the Catch2 side (g++).

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "cuda/info_nce_kernels.hpp"

namespace cuda_test {

enum class sweep { automatic, blocked, fused };

struct block_case {
  bool nt_xent = false;  // else InfoNCE / CLIP
  int n = 0, d = 0;
  double temperature = 0.07;
  bool symmetric = true;
  double label_smoothing = 0;
  bool sum_reduction = false;
  double upstream = 1;
  bool accumulate = false;                       // gradients start at 0.5
  std::vector<std::int64_t> labels_a, labels_b;  // InfoNCE (both or neither); NT-Xent: labels_a
  sweep mode = sweep::blocked;
};

/// The throwing wrappers with the given sweep mode; gradients poisoned with NaN (or 0.5).
loss_result run_block(dtype t, const block_case& c, const std::vector<double>& a,
                      const std::vector<double>& b);

/// Bytes of sweep_mode::blocked's workspace (no device needed).
std::size_t blocked_workspace_bytes(dtype t, bool nt_xent, int n, int d);

/// One bad input of the argument census below, described on the host so that the CPU side can
/// build the same one.
struct bad_input {
  const char* what;
  int n_a = 8, d_a = 16, n_b = 8, d_b = 16;  // shapes of a and b
  double temperature = 0.1, label_smoothing = 0, upstream = 1;
  int reduction = 0;  // 0 mean, 1 sum, else invalid
  int tile_rows = 256;
  int labels_a = -1, labels_b = -1;  // label counts, -1 for none
  bool nt_xent = false;
  bool backward = false;     // the bad value is the backward's (upstream, gradient outputs)
  int grad_cols = -1;        // >= 0: 'grad_a' has this many columns
  bool grad_a_is_a = false;  // 'grad_a' is the memory of 'a'
};
std::vector<bad_input> bad_inputs();
/// The message of the CUDA throwing wrapper for each bad input (no kernel runs: the checks come
/// first, so no GPU is needed).
std::vector<std::string> cuda_messages(const std::vector<bad_input>& cases);

}  // namespace cuda_test

#endif
