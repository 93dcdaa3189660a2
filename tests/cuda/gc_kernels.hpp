#ifndef CONTRASTIVE_TESTS_CUDA_GC_KERNELS_HPP
#define CONTRASTIVE_TESTS_CUDA_GC_KERNELS_HPP

// Host functions that run the CUDA geometric-consistency Gram path (gc_kernels.cu, nvcc) for
// test_geometric_consistency.cpp (g++). No CUDA or cuBLAS type appears here; library exceptions
// pass through.

#include <vector>

#include <contrastive/core/config.hpp>
#include <contrastive/losses/geometric_consistency_options.hpp>

namespace gpu_gc {

using contrastive::index_t;

struct run_options {
  bool single = false;        // float instead of double
  bool async = false;         // *_async + synchronise instead of the throwing wrappers
  bool generic = false;       // the generic contrastive::geometric_consistency_* functions
  bool col_major_in = false;  // v and u column-major on the device
  bool own_handle = true;  // pass a cuBLAS handle (else the wrappers create one; async needs one)
  index_t chunk = 0;       // async only: rows per chunk (0: the library's choice)
  double upstream = 1.0;
  std::vector<double> init_v, init_u;  // with o.accumulate: the gradients' initial values
  const contrastive::geometric_consistency_options* backward_options = nullptr;  // else o
  index_t grad_rows = -1;  // rows of the gradient outputs (-1: N)
  long long ws_delta = 0;  // async: workspace bytes given minus needed
};

struct result {
  double loss = 0;
  std::vector<double> grams;   // as the CPU's saved.grams
  std::vector<double> gv, gu;  // N x D row-major
  int status_forward = 0, status_backward = 0;
  bool split = false;  // the three-Gram form ran
};

/// v, u: n x d row-major host values (converted to float when single). Gradients are filled with
/// NaN first (or init_v / init_u with accumulate). Async runs stop at a failing status.
result run(const std::vector<double>& v, const std::vector<double>& u, index_t n, index_t d,
           const contrastive::geometric_consistency_options& o, const run_options& r);

int invalid_value_code();

}  // namespace gpu_gc

#endif  // CONTRASTIVE_TESTS_CUDA_GC_KERNELS_HPP
