#include "support/test_config.hpp"

#include "encoder/two_tower.hpp"
#include "gradcheck.hpp"

using enc_test::mat;
using enc_test::random_matrix;

namespace {

encoder::tower_views<double> make_views(std::uint64_t seed, encoder::index_t n,
                                        encoder::index_t d) {
  encoder::tower_views<double> v;
  v.z = random_matrix(n, d, seed);
  v.za = random_matrix(n, d, seed + 1);
  v.zi = random_matrix(n, d, seed + 2);
  v.zia = random_matrix(n, d, seed + 3);
  v.gz = mat::Zero(n, d);
  v.gza = mat::Zero(n, d);
  v.gzi = mat::Zero(n, d);
  v.gzia = mat::Zero(n, d);
  return v;
}

}  // namespace

TEST_CASE("two-tower objectives: L_Con + weight (L_GC + L^a_GC) gradients",
          "[encoder][two_tower]") {
  const double tau = 0.5, w = 0.3;
  auto a = make_views(1, 6, 4), b = make_views(3, 6, 4);
  auto objective = [&](encoder::tower_views<double>& x, encoder::tower_views<double>& y) {
    return encoder::add_l_con(x, y, tau) + encoder::add_geometric_consistency(x, y, w);
  };
  const double value = objective(a, b);
  // The value is the sum of the library's losses with these weights.
  contrastive::info_nce_options sym, one;
  sym.temperature = one.temperature = tau;
  one.symmetric = false;
  const double ref =
      0.5 * contrastive::info_nce_forward(a.z, b.z, sym).loss +
      0.25 * contrastive::info_nce_forward(a.z, a.za, one).loss +
      0.25 * contrastive::info_nce_forward(b.z, b.za, one).loss +
      w * contrastive::geometric_consistency_forward(a.z, b.z).loss +
      w * contrastive::geometric_consistency_augmented_forward(a.z, b.z, a.za, b.za).loss;
  CHECK(value == Approx(ref).epsilon(1e-12));

  auto f = [&]() {
    auto x = a, y = b;  // fresh gradient buffers
    return objective(x, y);
  };
  struct {
    mat* value;
    const mat* grad;
    const char* name;
  } inputs[] = {
      {&a.z, &a.gz, "V"}, {&a.za, &a.gza, "Va"}, {&b.z, &b.gz, "U"}, {&b.za, &b.gza, "Ua"}};
  for (auto& in : inputs) {
    INFO(in.name);
    const mat analytic = *in.grad;
    CHECK(enc_test::ct::gradcheck(*in.value, analytic, f));
  }
}

TEST_CASE("two-tower objectives: L_Con + L_Sep and L_Con + L_Br gradients",
          "[encoder][two_tower]") {
  const double tau = 0.4;
  auto a = make_views(11, 5, 3), b = make_views(13, 5, 3);
  // L_Br's closed form holds for unit rows; normalise V, U and Va as the towers do.
  contrastive::l2_normalize(a.z, a.z);
  contrastive::l2_normalize(b.z, b.z);
  contrastive::l2_normalize(a.za, a.za);
  auto objective = [&](encoder::tower_views<double>& x, encoder::tower_views<double>& y) {
    return encoder::add_l_con(x, y, tau) + encoder::add_feature_separation(x, y, 0.7, tau) +
           encoder::add_brownian_bridge(x, y, 1.3);
  };
  const double value = objective(a, b);
  contrastive::feature_separation_options fo;
  fo.temperature = tau;
  const double sep =
      contrastive::feature_separation_forward(a.z, b.z, a.zi, b.zi, a.zia, b.zia, fo).loss;
  const double br = contrastive::brownian_bridge_loss_forward(a.z, b.z, a.za).loss;
  auto fresh_a = make_views(11, 5, 3), fresh_b = make_views(13, 5, 3);
  fresh_a.z = a.z, fresh_b.z = b.z, fresh_a.za = a.za;
  CHECK(value ==
        Approx(encoder::add_l_con(fresh_a, fresh_b, tau) + 0.7 * sep + 1.3 * br).epsilon(1e-12));
  auto f = [&]() {
    auto x = a, y = b;
    return objective(x, y);
  };
  struct {
    mat* value;
    const mat* grad;
    const char* name;
  } inputs[] = {{&a.z, &a.gz, "V"},       {&a.za, &a.gza, "Va"},   {&a.zi, &a.gzi, "Vi"},
                {&a.zia, &a.gzia, "Via"}, {&b.z, &b.gz, "U"},      {&b.za, &b.gza, "Ua"},
                {&b.zi, &b.gzi, "Ui"},    {&b.zia, &b.gzia, "Uia"}};
  for (auto& in : inputs) {
    INFO(in.name);
    const mat analytic = *in.grad;
    CHECK(enc_test::ct::gradcheck(*in.value, analytic, f));
  }
}

TEST_CASE("two-tower objectives add into existing gradients", "[encoder][two_tower]") {
  auto a = make_views(5, 5, 3), b = make_views(7, 5, 3);
  encoder::add_info_nce(a.z, b.z, a.gz, b.gz, 1.0, true, 0.2);
  const mat once = a.gz;
  encoder::add_info_nce(a.z, b.z, a.gz, b.gz, 2.0, true, 0.2);
  CHECK((a.gz - 3 * once).cwiseAbs().maxCoeff() < 1e-12);
}

TEST_CASE("two-tower gamma objective: the library's gamma loss, weighted and added",
          "[encoder][two_tower]") {
  auto a = make_views(21, 6, 4), b = make_views(23, 6, 4);
  contrastive::l2_normalize(a.z, a.z);
  contrastive::l2_normalize(b.z, b.z);
  const std::vector<std::int64_t> ids{3, 0, 7, 9, 4, 1};
  contrastive::gamma_nce_options o;
  o.temperature = 0.3;
  o.seed = 5;
  o.step = 2;
  contrastive::normalizer_state s1(10), s2(10);
  a.gz.setOnes();
  double info = 0;
  const double value = encoder::add_gamma_nce(a, b, ids, s1, o, 0.5, &info);
  mat ga(6, 4), gb(6, 4);
  const auto ref = contrastive::gamma_nce_forward(a.z, b.z, ids, s2, o);
  contrastive::gamma_nce_backward(a.z, b.z, ref, ga, gb, o);
  CHECK(value == Approx(0.5 * ref.loss).epsilon(1e-12));
  CHECK(info == Approx(ref.info_nce).epsilon(1e-12));
  CHECK((a.gz - mat::Ones(6, 4) - 0.5 * ga).cwiseAbs().maxCoeff() < 1e-12);
  CHECK((b.gz - 0.5 * gb).cwiseAbs().maxCoeff() < 1e-12);
  CHECK(s1.visited(7, 0));
  CHECK_FALSE(s1.visited(8, 0));
}

TEST_CASE("two-tower modalities: halves, fixed evaluation noise, per-epoch training noise",
          "[encoder][two_tower]") {
  encoder::image_dataset d;
  d.height = d.width = 28;
  d.images = encoder::matrix<float>::Random(5, 28 * 28);
  d.labels = {0, 1, 2, 3, 4};
  const auto m = encoder::split_modalities(d, 7, 0.5, 0);
  CHECK(m.a == d.images.leftCols(14 * 28));
  CHECK(m.b_clean == d.images.rightCols(14 * 28));
  CHECK(m.labels == d.labels);
  const double noise = (m.b_eval - m.b_clean).cast<double>().norm() / std::sqrt(5.0 * 14 * 28);
  CHECK(noise == Approx(0.5).epsilon(0.1));
  CHECK(encoder::split_modalities(d, 7, 0.5, 0).b_eval == m.b_eval);  // a pure function
  CHECK(encoder::split_modalities(d, 7, 0.5, 1).b_eval != m.b_eval);  // test vs train stream
  const std::vector<encoder::index_t> ids{3, 1};
  const auto b0 = encoder::noisy_b(m, ids, 7, 0.5, 0);
  CHECK(b0.rows() == 2);
  CHECK(encoder::noisy_b(m, ids, 7, 0.5, 0) == b0);
  CHECK(encoder::noisy_b(m, ids, 7, 0.5, 1) != b0);  // redrawn every epoch
  CHECK(encoder::noisy_b(m, ids, 7, 0.0, 3) == encoder::gather_rows(m.b_clean, ids));
  d.width = 27;
  CHECK_THROWS_AS(encoder::split_modalities(d, 7, 0.5, 0), encoder::error);
}

TEST_CASE("alignment metrics: CLIP loss and top-1 over whole chunks", "[encoder][two_tower]") {
  // Orthonormal rows: each a_i matches b_i only, so top-1 is 1 and the chunk's CLIP loss is
  // log(1 + (n - 1) exp(-1 / tau)) in both directions.
  const encoder::index_t n = 4;
  encoder::matrix<float> a = encoder::matrix<float>::Identity(2 * n, 2 * n);
  encoder::matrix<float> b = a;
  double clip = 0, top1 = 0;
  encoder::alignment_metrics(a, b, 0.5, n, clip, top1);
  CHECK(top1 == 1.0);
  CHECK(clip == Approx(std::log(1 + (n - 1) * std::exp(-2.0))).epsilon(1e-5));
  // Reverse b within each chunk: no match is found, and the loss is higher.
  for (encoder::index_t r = 0; r < 2 * n; r += n)
    b.middleRows(r, n) = a.middleRows(r, n).colwise().reverse();
  double clip_bad = 0;
  encoder::alignment_metrics(a, b, 0.5, n, clip_bad, top1);
  CHECK(top1 == 0.0);
  CHECK(clip_bad > clip);
  // A partial last chunk is left out; no whole chunk gives NaN.
  encoder::alignment_metrics(a.topRows(n + 1), a.topRows(n + 1), 0.5, n, clip, top1);
  CHECK(top1 == 1.0);
  encoder::alignment_metrics(a.topRows(n - 1), a.topRows(n - 1), 0.5, n, clip, top1);
  CHECK(std::isnan(clip));
  CHECK(std::isnan(top1));
  CHECK(encoder::concat(a.leftCols(3), b.leftCols(2)).cols() == 5);
}
