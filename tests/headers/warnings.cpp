// headers/warnings: instantiates every public loss, sampler and the state for float and double,
// forward, backward and forward_backward, so that -Wconversion, -Wshadow and friends see the
// template code (check_warnings.cmake compiles this TU with -Werror; it is never linked).
#include <cstdint>
#include <vector>

#include <Eigen/Core>
#include <contrastive/contrastive.hpp>
#include <contrastive/distributed/gamma_nce.hpp>
#include <contrastive/distributed/info_nce.hpp>
#include <contrastive/distributed/nt_xent.hpp>
#include <contrastive/testing/gradcheck.hpp>

namespace c = contrastive;

template <class T>
void exercise() {
  using mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const mat a = mat::Random(8, 4), b = mat::Random(8, 4), aa = mat::Random(8, 4),
            ba = mat::Random(8, 4);
  mat ga(8, 4), gb(8, 4), gaa(8, 4), gba(8, 4), ge(8, 4), gf(8, 4), y(8, 4), x(8 * 5, 4);
  const std::vector<std::int64_t> ids{0, 1, 2, 3, 4, 5, 6, 7};

  const auto s1 = c::info_nce_forward(a, b);
  c::info_nce_backward(a, b, s1, ga, gb);
  c::info_nce_forward_backward(a, b, ga, gb);
  const auto s2 = c::nt_xent_forward(a, b);
  c::nt_xent_backward(a, b, s2, ga, gb);
  c::nt_xent_forward_backward(a, b, ga, gb);

  c::normalizer_state state(8, 2);
  const auto s3 = c::gamma_nce_forward(a, b, ids, state);
  c::gamma_nce_backward(a, b, s3, ga, gb);
  c::gamma_nce_forward_backward(a, b, ids, state, ga, gb);

  const auto s4 = c::feature_separation_forward(a, b, aa, ba, a, b);
  c::feature_separation_backward(a, b, aa, ba, a, b, s4, ga, gb, gaa, gba, ge, gf);
  c::feature_separation_forward_backward(a, b, aa, ba, a, b, ga, gb, gaa, gba, ge, gf);

  const auto s5 = c::geometric_consistency_forward(a, b);
  c::geometric_consistency_backward(a, b, s5, ga, gb);
  c::geometric_consistency_augmented_forward_backward(a, b, aa, ba, ga, gb, gaa, gba);

  const auto s6 = c::brownian_bridge_loss_forward(a, b, aa);
  c::brownian_bridge_loss_backward(a, b, aa, s6, ga, gb, gaa);
  const auto s7 = c::brownian_bridge_sample(a, b, y);
  c::brownian_bridge_sample_backward(a, b, s7, y, ga, gb);
  const auto s8 = c::brownian_bridge_trajectory(a, b, x);
  c::brownian_bridge_trajectory_backward(a, b, s8, x, ga, gb);

  c::dcl_forward_backward(a, b, ga, gb);
  c::siglip_forward_backward(a, b, ga, gb);
  c::supcon_options so;
  so.labels = ids;
  c::supcon_forward_backward(a, ga, so);
  c::negative_queue<T> queue(16, 4);
  queue.enqueue(b);
  c::moco_forward_backward(a, b, queue.view(), ga, gb);
  c::info_nce_options debiased;
  debiased.debias_tau_plus = 0.1;
  debiased.hard_negative_beta = 1;
  c::info_nce_forward_backward(a, b, ga, gb, debiased);

  const c::distributed::self_communicator comm;
  c::distributed::info_nce_forward_backward(comm, a, b, ga, gb);
  c::distributed::nt_xent_forward_backward(comm, a, b, ga, gb);
  c::distributed::gamma_nce_forward_backward(comm, a, b, ids, state, ga, gb);

  Eigen::MatrixXd w = Eigen::MatrixXd::Random(4, 4), gw = Eigen::MatrixXd::Ones(4, 4);
  c::testing::gradcheck(w, gw, [&] { return w.sum(); });  // finite differences are in double
}

template void exercise<float>();
template void exercise<double>();
