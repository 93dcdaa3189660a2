#ifndef CONTRASTIVE_TESTS_CUDA_INFO_NCE_KERNELS_HPP
#define CONTRASTIVE_TESTS_CUDA_INFO_NCE_KERNELS_HPP

// Host functions (built by nvcc in info_nce_kernels.cu) that run the CUDA InfoNCE family and
// return plain vectors, so that the Catch2 side (g++) never sees a CUDA type.

#include <string>
#include <vector>

namespace cuda_test {

enum class dtype { f32, tf32, f16, bf16 };
const char* name(dtype t);

/// x rounded to what the GPU stores for dtype (bf16 / fp16 round to nearest even; f32 and tf32
/// store float), returned in double: the CPU reference then sees the GPU's exact inputs.
std::vector<double> round_to(dtype t, const std::vector<double>& x);

struct loss_case {
  int n = 0, d = 0;
  double temperature = 0.07;
  bool symmetric = true;  // InfoNCE only
  double label_smoothing = 0;
  bool sum_reduction = false;
  double upstream = 1;
  bool accumulate = false;  // gradients start at 0.5 and are added to
};

struct loss_result {
  double loss = 0;
  std::vector<double> row_lse, col_lse;  // CLIP: n each; NT-Xent: 2n in row_lse
  std::vector<double> grad_a, grad_b;    // n x d row-major
  double grad_temperature = 0;           // upstream * dL/dtau
  std::string error;                     // a thrown exception's message
};

/// The throwing wrappers on device copies of a and b (n x d row-major, rounded to dtype). The
/// gradients are poisoned with NaN first (or set to 0.5 with accumulate).
loss_result run_info_nce(dtype t, const loss_case& c, const std::vector<double>& a,
                         const std::vector<double>& b);
loss_result run_nt_xent(dtype t, const loss_case& c, const std::vector<double>& a,
                        const std::vector<double>& b);
/// The generic contrastive::info_nce_forward / _backward called with device views.
loss_result run_info_nce_generic(const loss_case& c, const std::vector<double>& a,
                                 const std::vector<double>& b);

/// Status codes of the _async entry points for bad arguments (each must be cudaErrorInvalidValue,
/// returned as an int), and the messages of the throwing wrappers for the same arguments.
std::vector<int> async_bad_argument_statuses();
std::vector<std::string> wrapper_bad_argument_messages();
int invalid_value_status();

}  // namespace cuda_test

#endif
