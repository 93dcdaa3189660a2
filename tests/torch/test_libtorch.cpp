// LibTorch C++ front ends (contrastive/torch/autograd.hpp) and the ATen adapter
// (contrastive/adapters/torch.hpp): parity with ATen's own math in double, autograd through a
// learnable logit scale, strided inputs without copies, float16 / bfloat16, threads and errors.
// Catch2 with prefixed macros: torch's headers define a glog-style CHECK of their own.
#define CATCH_CONFIG_MAIN
#define CATCH_CONFIG_PREFIX_ALL
#include <catch2/catch.hpp>

#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>

#include <cmath>

#include "contrastive/adapters/torch.hpp"
#include "contrastive/losses/info_nce.hpp"
#include "contrastive/torch/autograd.hpp"

namespace ct = contrastive::libtorch;

// The front ends live in contrastive::libtorch, so `using namespace contrastive;` leaves ::torch
// unambiguous.
namespace using_directive_check {
using namespace contrastive;
inline torch::autograd::variable_list pass(torch::autograd::variable_list v) { return v; }
}  // namespace using_directive_check

namespace {

at::Tensor randn(std::int64_t n, std::int64_t d, at::ScalarType t = at::kDouble) {
  return at::randn({n, d}, at::TensorOptions().dtype(t));
}

// open_clip's ClipLoss in plain ATen ops.
at::Tensor clip_reference(const at::Tensor& a, const at::Tensor& b, const at::Tensor& scale) {
  const at::Tensor logits = scale * at::mm(a, b.t());
  const at::Tensor target = at::arange(a.size(0), at::kLong);
  return (at::cross_entropy_loss(logits, target) + at::cross_entropy_loss(logits.t(), target)) / 2;
}

at::Tensor nt_xent_reference(const at::Tensor& a, const at::Tensor& b, double scale) {
  const std::int64_t n = a.size(0);
  const at::Tensor z = at::cat({a, b});
  const at::Tensor eye = at::eye(2 * n, at::TensorOptions().dtype(at::kBool));
  const at::Tensor s = (scale * at::mm(z, z.t())).masked_fill(eye, -INFINITY);
  const at::Tensor target = at::cat({at::arange(n, 2 * n, at::kLong), at::arange(n, at::kLong)});
  return at::cross_entropy_loss(s, target);
}

double max_diff(const at::Tensor& x, const at::Tensor& y) {
  return (x - y).abs().max().item<double>();
}

std::vector<at::Tensor> grads(const at::Tensor& loss, const std::vector<at::Tensor>& in) {
  return torch::autograd::grad({loss}, in);
}

}  // namespace

CATCH_TEST_CASE("adapter: torch_matrix views the tensor's memory with its strides") {
  at::Tensor x = at::arange(12, at::kFloat).reshape({3, 4});
  const auto v = contrastive::as_view(contrastive::torch_matrix<float>(x));
  CATCH_CHECK(v.data() == x.data_ptr<float>());
  CATCH_CHECK(v.rows() == 3);
  CATCH_CHECK(v.cols() == 4);
  CATCH_CHECK(v.row_stride() == 4);
  CATCH_CHECK(v.col_stride() == 1);
  const at::Tensor t = x.t();  // 4 x 3, column-major
  const auto vt = contrastive::as_view(contrastive::torch_matrix<const float>(t));
  CATCH_CHECK(vt.row_stride() == 1);
  CATCH_CHECK(vt.col_stride() == 4);
  CATCH_CHECK(vt(2, 1) == t[2][1].item<float>());
  const at::Tensor s = x.slice(1, 1, 3);  // row-strided
  const auto vs = contrastive::torch_view<float>(s);
  CATCH_CHECK(vs.data() == x.data_ptr<float>() + 1);
  CATCH_CHECK(vs(2, 1) == 10.0f);
  auto acc = x.accessor<float, 2>();
  const auto va = contrastive::as_view(acc);
  CATCH_CHECK(va.data() == x.data_ptr<float>());
  CATCH_CHECK(va(1, 2) == 6.0f);
  CATCH_CHECK_THROWS_AS(contrastive::torch_matrix<double>(x), contrastive::invalid_argument);
  CATCH_CHECK_THROWS_AS(contrastive::torch_matrix<float>(at::zeros({2, 2, 2})),
                        contrastive::invalid_argument);
}

CATCH_TEST_CASE("adapter: the library runs on ATen tensors directly") {
  at::manual_seed(1);
  const at::Tensor a = randn(6, 4), b = randn(6, 4);
  contrastive::info_nce_options o;
  o.temperature = 0.5;
  const auto saved = contrastive::info_nce_forward(contrastive::torch_matrix<const double>(a),
                                                   contrastive::torch_matrix<const double>(b), o);
  const double want = clip_reference(a, b, at::scalar_tensor(2.0, at::kDouble)).item<double>();
  CATCH_CHECK(std::abs(saved.loss - want) < 1e-12);
}

CATCH_TEST_CASE("clip_loss: parity with mm + cross_entropy, gradients incl. logit_scale") {
  at::manual_seed(2);
  const at::Tensor a = randn(9, 5).set_requires_grad(true);
  const at::Tensor b = randn(9, 5).set_requires_grad(true);
  const at::Tensor theta =
      at::scalar_tensor(std::log(1 / 0.07), at::kDouble).set_requires_grad(true);
  const at::Tensor loss = ct::clip_loss(a, b, theta.exp());
  const at::Tensor want = clip_reference(a, b, theta.exp());
  CATCH_CHECK(max_diff(loss, want) < 1e-10);
  const auto g = grads(loss, {a, b, theta});
  const auto w = grads(want, {a, b, theta});
  for (std::size_t i = 0; i < g.size(); ++i) CATCH_CHECK(max_diff(g[i], w[i]) < 1e-10);
}

CATCH_TEST_CASE("info_nce_loss and nt_xent_loss: parity and backward") {
  at::manual_seed(3);
  const at::Tensor a = randn(7, 3).set_requires_grad(true);
  const at::Tensor b = randn(7, 3).set_requires_grad(true);
  ct::info_nce_loss_options o;
  o.temperature = 0.25;
  const at::Tensor l1 = ct::info_nce_loss(a, b, o);
  const at::Tensor r1 = at::cross_entropy_loss(at::mm(a, b.t()) / 0.25, at::arange(7, at::kLong));
  CATCH_CHECK(max_diff(l1, r1) < 1e-10);
  const auto g1 = grads(l1, {a, b});
  const auto w1 = grads(r1, {a, b});
  CATCH_CHECK(max_diff(g1[0], w1[0]) < 1e-10);
  CATCH_CHECK(max_diff(g1[1], w1[1]) < 1e-10);

  ct::nt_xent_loss_options no;
  no.temperature = 0.5;
  const at::Tensor l2 = ct::nt_xent_loss(a, b, no);
  const at::Tensor r2 = nt_xent_reference(a, b, 2.0);
  CATCH_CHECK(max_diff(l2, r2) < 1e-10);
  const auto g2 = grads(l2, {a, b});
  const auto w2 = grads(r2, {a, b});
  CATCH_CHECK(max_diff(g2[0], w2[0]) < 1e-10);
  CATCH_CHECK(max_diff(g2[1], w2[1]) < 1e-10);

  const at::Tensor ls = at::scalar_tensor(3.0, at::kDouble).set_requires_grad(true);
  const at::Tensor l3 = ct::nt_xent_loss(a, b, {}, ls);
  const at::Tensor r3 = nt_xent_reference(a * ls.sqrt(), b * ls.sqrt(), 1.0);
  CATCH_CHECK(max_diff(l3, r3) < 1e-10);
  CATCH_CHECK(max_diff(grads(l3, {ls})[0], grads(r3, {ls})[0]) < 1e-10);
}

CATCH_TEST_CASE("clip_loss: strided inputs and float16 / bfloat16") {
  at::manual_seed(4);
  const at::Tensor a = randn(8, 6, at::kFloat), b = randn(8, 6, at::kFloat);
  const at::Tensor s = at::scalar_tensor(3.0);
  const double want = ct::clip_loss(a, b, s).item<double>();
  const at::Tensor at_ = a.t().contiguous().t();
  const at::Tensor wide = at::zeros({8, 10});
  wide.slice(1, 2, 8).copy_(b);
  CATCH_CHECK(std::abs(ct::clip_loss(at_, wide.slice(1, 2, 8), s).item<double>() - want) < 1e-6);
  for (auto t : {at::kHalf, at::kBFloat16}) {
    const at::Tensor ah = a.to(t).set_requires_grad(true), bh = b.to(t).set_requires_grad(true);
    const at::Tensor l = ct::clip_loss(ah, bh, s);
    CATCH_CHECK(l.scalar_type() == at::kFloat);
    CATCH_CHECK(std::abs(l.item<double>() - want) < 0.05);
    const auto g = grads(l, {ah, bh});
    CATCH_CHECK(g[0].scalar_type() == t);
  }
}

CATCH_TEST_CASE("clip_loss: at::set_num_threads does not change results") {
  at::manual_seed(5);
  const at::Tensor a = randn(300, 16, at::kFloat).set_requires_grad(true);
  const at::Tensor b = randn(300, 16, at::kFloat).set_requires_grad(true);
  const int before = at::get_num_threads();
  at::set_num_threads(1);
  const at::Tensor l1 = ct::clip_loss(a, b, at::scalar_tensor(10.0));
  const auto g1 = grads(l1, {a, b});
  at::set_num_threads(2);
  const at::Tensor l2 = ct::clip_loss(a, b, at::scalar_tensor(10.0));
  const auto g2 = grads(l2, {a, b});
  at::set_num_threads(before);
  CATCH_CHECK(at::equal(l1, l2));
  CATCH_CHECK(at::equal(g1[0], g2[0]));
  CATCH_CHECK(at::equal(g1[1], g2[1]));
}

CATCH_TEST_CASE("front ends: bad input throws c10::ValueError with the library's message") {
  const at::Tensor a = randn(4, 3), b = randn(4, 3);
  CATCH_CHECK_THROWS_AS(ct::clip_loss(randn(5, 3), b), c10::ValueError);
  CATCH_CHECK_THROWS_WITH(ct::clip_loss(a, randn(5, 3)), Catch::Contains("rows"));
  CATCH_CHECK_THROWS_AS(ct::clip_loss(a.reshape({12}), b), c10::ValueError);
  CATCH_CHECK_THROWS_WITH(ct::clip_loss(a.clone().fill_(NAN), b), Catch::Contains("non-finite"));
  CATCH_CHECK_THROWS_AS(ct::clip_loss(a.to(at::kInt), b.to(at::kInt)), c10::ValueError);
  CATCH_CHECK_THROWS_AS(ct::clip_loss(a, b.to(at::kFloat)), c10::ValueError);
  ct::info_nce_loss_options o;
  o.temperature = -1;
  CATCH_CHECK_THROWS_WITH(ct::info_nce_loss(a, b, o), Catch::Contains("temperature"));
  ct::clip_loss_options co;
  co.label_smoothing = 2;
  CATCH_CHECK_THROWS_AS(ct::clip_loss(a, b, {}, co), c10::ValueError);
  co.label_smoothing = 0;
  co.labels_a = at::arange(3, at::kLong);
  CATCH_CHECK_THROWS_AS(ct::clip_loss(a, b, {}, co), c10::ValueError);
}

// ---- Regularisers and the gamma loss -------------------------------------------------------------

namespace {

at::Tensor gc_reference(const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor m = at::mm(a, b.t());
  const at::Tensor e = at::mm(a, a.t()) - at::mm(b, b.t());
  return ((m - m.t()).pow(2).sum() + e.pow(2).sum()) / a.size(0);
}

at::Tensor bridge_reference(const at::Tensor& a, const at::Tensor& b, const at::Tensor& aa,
                            double t) {
  const at::Tensor m = t * a + (1 - t) * b;
  const at::Tensor mu = m / m.norm(2, {1}, true);
  return (aa - mu).pow(2).sum(1).mean();
}

}  // namespace

CATCH_TEST_CASE("geometric_consistency_loss and brownian_bridge_loss: parity and gradients") {
  at::manual_seed(6);
  const at::Tensor a = randn(7, 3).set_requires_grad(true);
  const at::Tensor b = randn(7, 3).set_requires_grad(true);
  const at::Tensor l = ct::geometric_consistency_loss(a, b);
  const at::Tensor r = gc_reference(a, b);
  CATCH_CHECK(max_diff(l, r) < 1e-10);
  const auto g = grads(l, {a, b});
  const auto w = grads(r, {a, b});
  CATCH_CHECK(max_diff(g[0], w[0]) < 1e-9);
  CATCH_CHECK(max_diff(g[1], w[1]) < 1e-9);
  // L^a_GC vanishes when the augmented views equal the originals.
  CATCH_CHECK(ct::geometric_consistency_loss(a, b, a.detach(), b.detach()).item<double>() < 1e-20);

  const at::Tensor aa = randn(7, 3).set_requires_grad(true);
  ct::brownian_bridge_loss_options_t bo;
  bo.t = 0.3;
  const at::Tensor lb = ct::brownian_bridge_loss(a, b, aa, bo);
  const at::Tensor rb = bridge_reference(a, b, aa, 0.3);
  CATCH_CHECK(max_diff(lb, rb) < 1e-10);
  const auto gb = grads(lb, {a, b, aa});
  const auto wb = grads(rb, {a, b, aa});
  for (int i = 0; i < 3; ++i) CATCH_CHECK(max_diff(gb[i], wb[i]) < 1e-9);
}

CATCH_TEST_CASE("brownian_bridge_sample: endpoints of trajectories, gradients through points") {
  at::manual_seed(7);
  const at::Tensor a = randn(4, 5), b = randn(4, 5);
  const at::Tensor ua = (a / a.norm(2, {1}, true)).set_requires_grad(true);
  const at::Tensor ub = (b / b.norm(2, {1}, true)).set_requires_grad(true);
  ct::brownian_bridge_sample_options so;
  so.steps = 4;
  so.seed = 3;
  const at::Tensor path = ct::brownian_bridge_sample(ua, ub, so).reshape({4, 5, 5});
  CATCH_CHECK(max_diff(path.select(1, 0), ub) < 1e-12);
  CATCH_CHECK(max_diff(path.select(1, 4), ua) < 1e-12);
  ct::brownian_bridge_sample_options po;
  po.eps = at::randn({4, 5}, at::kDouble);
  po.t = 0.4;
  const at::Tensor y = ct::brownian_bridge_sample(ua, ub, po);
  const at::Tensor m = 0.4 * ua + 0.6 * ub;
  const at::Tensor want = m / m.norm(2, {1}, true) + std::sqrt(0.4 * 0.6) / std::sqrt(5.0) * po.eps;
  CATCH_CHECK(max_diff(y, want) < 1e-12);
  const auto g = grads(y.pow(2).sum(), {ua, ub});
  const auto w = grads(want.pow(2).sum(), {ua, ub});
  CATCH_CHECK(max_diff(g[0], w[0]) < 1e-10);
  CATCH_CHECK(max_diff(g[1], w[1]) < 1e-10);
}

CATCH_TEST_CASE("feature_separation_loss and gamma_nce_loss: values, gradients, state") {
  at::manual_seed(8);
  std::vector<at::Tensor> x;
  for (int i = 0; i < 6; ++i) x.push_back(randn(5, 3).set_requires_grad(true));
  ct::feature_separation_loss_options fo;
  fo.contrastive_weight = 0;
  fo.uniformity_weight = 0;
  const at::Tensor lf = ct::feature_separation_loss(x[0], x[1], x[2], x[3], x[4], x[5], fo);
  const at::Tensor rf = ((x[0] * x[2]).sum(1).pow(2) + (x[1] * x[3]).sum(1).pow(2)).sum() / 5;
  CATCH_CHECK(max_diff(lf, rf) < 1e-12);
  const auto gf = grads(lf, {x[0], x[2]});
  const auto wf = grads(rf, {x[0], x[2]});
  CATCH_CHECK(max_diff(gf[0], wf[0]) < 1e-12);
  CATCH_CHECK(max_diff(gf[1], wf[1]) < 1e-12);

  // Same-batch rate with the positive in the normaliser and g/alpha := 1 gives CLIP's gradient.
  ct::gamma_nce_loss_options go;
  go.temperature = 0.5;
  go.alpha = std::numeric_limits<double>::infinity();
  go.positive_in_normaliser = true;
  const at::Tensor ids = at::arange(5, at::kLong);
  const at::Tensor lg = ct::gamma_nce_loss(x[0], x[1], ids, nullptr, go);
  const at::Tensor lc = ct::clip_loss(x[0], x[1], at::scalar_tensor(2.0, at::kDouble));
  const auto gg = grads(lg, {x[0], x[1]});
  const auto gc = grads(lc, {x[0], x[1]});
  CATCH_CHECK(max_diff(gg[0], gc[0]) < 1e-12);
  CATCH_CHECK(max_diff(gg[1], gc[1]) < 1e-12);

  ct::gamma_state state(20);
  ct::gamma_nce_loss_options so;
  so.seed = 4;
  const at::Tensor batch = at::tensor({2, 3, 5, 7, 11}, at::kLong);
  const at::Tensor ls = ct::gamma_nce_loss(x[0], x[1], batch, &state, so);
  CATCH_CHECK(std::isfinite(ls.item<double>()));
  CATCH_CHECK(state.visited.sum().item<std::int64_t>() == 10);
  CATCH_CHECK(state.visited.select(0, 0).index({batch}).all().item<bool>());
  ls.backward();
  CATCH_CHECK(x[0].grad().defined());
  CATCH_CHECK_THROWS_AS(
      ct::gamma_nce_loss(x[0], x[1], at::tensor({0, 0, 1, 2, 3}, at::kLong), &state, so),
      c10::ValueError);
}
