#include "support/test_config.hpp"

#include <contrastive/contrastive.hpp>

#include "encoder/layers.hpp"
#include "encoder/probe.hpp"
#include "gradcheck.hpp"

using enc_test::check_layer;
using enc_test::mat;
using enc_test::random_matrix;
using encoder::index_t;

namespace {
constexpr double tol = 1e-6;
}

TEST_CASE("gradient checker detects a wrong backward", "[encoder][gradcheck]") {
  // A layer whose backward forgets the factor 2 of y = 2x: the checker must fail it.
  struct wrong final : encoder::layer<double> {
    mat forward(const mat& x) override { return 2 * x; }
    mat backward(const mat& g) override { return g; }
    std::string kind() const override { return "wrong"; }
  } l;
  const auto c = check_layer(l, random_matrix(3, 4, 1), 1);
  CHECK_FALSE(c.input.passed);
  CHECK(c.input_error > 0.1);
}

TEST_CASE("linear: forward value and gradients", "[encoder][linear]") {
  encoder::linear<double> l(5, 3, 42);
  l.bias().value = random_matrix(1, 3, 7);
  const mat x = random_matrix(4, 5, 2);
  const mat y = l.forward(x);
  mat expected = x * l.weight().value;
  expected.rowwise() += l.bias().value.row(0);
  CHECK((y - expected).cwiseAbs().maxCoeff() < 1e-14);
  const auto c = check_layer(l, x, 3);
  CHECK(c.input_error < tol);
  INFO("worst parameter " << c.worst_param);
  CHECK(c.max_param_error < tol);
}

TEST_CASE("linear: backward accumulates parameter gradients", "[encoder][linear]") {
  encoder::linear<double> l(3, 2, 1);
  const mat x = random_matrix(4, 3, 5), g = random_matrix(4, 2, 6);
  l.forward(x);
  l.backward(g);
  const mat once = l.weight().grad;
  l.forward(x);
  l.backward(g);
  CHECK((l.weight().grad - 2 * once).cwiseAbs().maxCoeff() < 1e-12);
}

TEST_CASE("linear: shape errors are reported", "[encoder][linear]") {
  encoder::linear<double> l(3, 2, 1);
  l.set_name("enc.0");
  CHECK_THROWS_WITH(l.forward(random_matrix(2, 4, 1)),
                    Catch::Contains("linear 'enc.0'") && Catch::Contains("4 columns, expected 3"));
  l.forward(random_matrix(2, 3, 1));
  CHECK_THROWS_AS(l.backward(random_matrix(3, 2, 1)), encoder::error);
}

TEST_CASE("relu and gelu: gradients", "[encoder][activation]") {
  encoder::relu<double> r;
  const mat x = random_matrix(6, 7, 11);
  CHECK(r.forward(x).minCoeff() >= 0);
  CHECK(check_layer(r, x, 12).input_error < tol);

  encoder::gelu<double> g;
  const mat y = g.forward(x);
  // Known values: GELU(1) = 0.841344746..., GELU(-1) = -0.158655254...
  mat probe(1, 2);
  probe << 1.0, -1.0;
  const mat gp = g.forward(probe);
  CHECK(gp(0, 0) == Approx(0.8413447460685429).epsilon(1e-12));
  CHECK(gp(0, 1) == Approx(-0.15865525393145707).epsilon(1e-12));
  CHECK(check_layer(g, 3 * x, 13).input_error < tol);
  (void)y;
}

TEST_CASE("layer_norm: normalises rows and has correct gradients", "[encoder][layer_norm]") {
  encoder::layer_norm<double> ln(6);
  const mat x = random_matrix(5, 6, 21, 3.0);
  const mat y = ln.forward(x);
  for (index_t i = 0; i < y.rows(); ++i) {
    CHECK(std::abs(y.row(i).mean()) < 1e-12);
    CHECK(y.row(i).squaredNorm() / 6 == Approx(1.0).epsilon(1e-4));  // eps = 1e-5 in the variance
  }
  // Non-trivial scale and shift, so that every term of the backward matters.
  ln.parameters()[0]->value = random_matrix(1, 6, 22);
  ln.parameters()[1]->value = random_matrix(1, 6, 23);
  const auto c = check_layer(ln, x, 24);
  CHECK(c.input_error < tol);
  INFO("worst parameter " << c.worst_param);
  CHECK(c.max_param_error < tol);
}

TEST_CASE("l2_norm: unit rows and gradients through contrastive::l2_normalize", "[encoder][l2]") {
  encoder::l2_norm<double> l2;
  const mat x = random_matrix(4, 5, 31);
  const mat y = l2.forward(x);
  for (index_t i = 0; i < y.rows(); ++i) CHECK(y.row(i).norm() == Approx(1.0).epsilon(1e-14));
  CHECK(check_layer(l2, x, 32).input_error < tol);
}

TEST_CASE("sequential MLP encoder and projection head: gradients of every parameter",
          "[encoder][mlp]") {
  encoder::sequential<double> net("net");
  net.add<encoder::linear<double>>(6, 8, 5);
  net.add<encoder::layer_norm<double>>(8);
  net.add<encoder::gelu<double>>();
  net.add<encoder::linear<double>>(8, 7, 5);
  net.add<encoder::relu<double>>();
  net.add<encoder::linear<double>>(7, 4, 5);
  net.add<encoder::l2_norm<double>>();
  const auto params = net.parameters();
  REQUIRE(params.size() == 8);
  CHECK(params[0]->name == "net.0.weight");
  CHECK(params[2]->name == "net.1.gamma");
  CHECK(params[7]->name == "net.5.bias");
  const auto c = check_layer(net, random_matrix(5, 6, 41), 42);
  CHECK(c.input_error < tol);
  INFO("worst parameter " << c.worst_param);
  CHECK(c.max_param_error < tol);
}

TEST_CASE("factories build the documented architectures", "[encoder][mlp]") {
  auto enc = encoder::make_mlp_encoder<float>("backbone", 784, {256, 128}, 1);
  CHECK(enc.size() == 6);
  CHECK(enc.forward(encoder::matrix<float>::Zero(3, 784)).cols() == 128);
  auto head = encoder::make_projection_head<float>("head", 128, 128, 64, 1);
  CHECK(head.size() == 3);
  CHECK(head[1].kind() == "relu");
  CHECK(encoder::parameter_count(head.parameters()) == 128 * 128 + 128 + 128 * 64 + 64);
}

TEST_CASE("initialisation is deterministic in (seed, parameter name)", "[encoder][init]") {
  auto a = encoder::make_mlp_encoder<float>("backbone", 20, {16, 8}, 7);
  auto b = encoder::make_mlp_encoder<float>("backbone", 20, {16, 8}, 7);
  auto c = encoder::make_mlp_encoder<float>("backbone", 20, {16, 8}, 8);
  auto pa = a.parameters(), pb = b.parameters(), pc = c.parameters();
  for (std::size_t k = 0; k < pa.size(); ++k) CHECK(pa[k]->value == pb[k]->value);
  CHECK(pa[0]->value != pc[0]->value);
  CHECK(pa[0]->value.cwiseAbs().maxCoeff() > 0);
  // He initialisation: W ~ N(0, 2 / fan_in).
  auto big = encoder::make_mlp_encoder<double>("big", 400, {300}, 3);
  const auto& w = big.parameters()[0]->value;
  const double var = w.squaredNorm() / static_cast<double>(w.size());
  CHECK(var == Approx(2.0 / 400).epsilon(0.02));
  CHECK(std::abs(w.mean()) < 4 * std::sqrt(2.0 / 400 / static_cast<double>(w.size())));
}

TEST_CASE("softmax cross-entropy: value and gradient", "[encoder][probe]") {
  const mat logits = random_matrix(5, 4, 51);
  const std::vector<int> labels{0, 3, 2, 2, 1};
  mat grad;
  index_t hits = 0;
  const double loss = encoder::softmax_cross_entropy(logits, labels, &grad, &hits);
  double ref = 0;
  for (index_t i = 0; i < 5; ++i)
    ref += std::log(logits.row(i).array().exp().sum()) -
           logits(i, labels[static_cast<std::size_t>(i)]);
  CHECK(loss == Approx(ref / 5).epsilon(1e-12));
  mat x = logits;
  CHECK(
      enc_test::ct::gradcheck(x, grad, [&] { return encoder::softmax_cross_entropy(x, labels); }));
  CHECK_THROWS_AS(encoder::softmax_cross_entropy(logits, std::vector<int>{0, 1}), encoder::error);
}

TEST_CASE("whole SimCLR model: gradients through NT-Xent, head, backbone", "[encoder][nt_xent]") {
  // backbone -> head -> l2_norm -> NT-Xent(top half, bottom half): the training program's graph.
  encoder::sequential<double> net("net");
  net.add<encoder::linear<double>>(6, 8, 9);
  net.add<encoder::layer_norm<double>>(8);
  net.add<encoder::gelu<double>>();
  net.add<encoder::linear<double>>(8, 8, 9);
  net.add<encoder::relu<double>>();
  net.add<encoder::linear<double>>(8, 5, 9);
  net.add<encoder::l2_norm<double>>();
  mat x = random_matrix(8, 6, 61);  // 4 samples x 2 views
  contrastive::nt_xent_options o;
  o.temperature = 0.5;
  auto loss_of = [&]() {
    const mat z = net.forward(x);
    mat ga(4, 5), gb(4, 5);
    return static_cast<double>(
        contrastive::nt_xent_forward_backward(z.topRows(4), z.bottomRows(4), ga, gb, o));
  };
  auto params = net.parameters();
  encoder::zero_grad(params);
  const mat z = net.forward(x);
  mat g(8, 5);
  contrastive::nt_xent_forward_backward(z.topRows(4), z.bottomRows(4), g.topRows(4),
                                        g.bottomRows(4), o);
  const mat gx = net.backward(g);
  CHECK(enc_test::ct::gradcheck(x, gx, loss_of));
  for (auto* p : params) {
    INFO(p->name);
    const mat analytic = p->grad;
    CHECK(enc_test::ct::gradcheck(p->value, analytic, loss_of));
  }
}
