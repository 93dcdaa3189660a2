#include "support/test_config.hpp"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "encoder/checkpoint.hpp"
#include "encoder/optim.hpp"
#include "gradcheck.hpp"

using enc_test::mat;
using enc_test::random_matrix;

namespace {

std::string temp_path(const std::string& name) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("encoder_tests_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

std::vector<char> read_all(const std::string& p) {
  std::ifstream is(p, std::ios::binary);
  return std::vector<char>((std::istreambuf_iterator<char>(is)), std::istreambuf_iterator<char>());
}
void write_all(const std::string& p, const std::vector<char>& d) {
  std::ofstream os(p, std::ios::binary | std::ios::trunc);
  os.write(d.data(), static_cast<std::streamsize>(d.size()));
}

}  // namespace

TEST_CASE("adamw matches a scalar reference over several steps", "[encoder][adamw]") {
  encoder::parameter<double> w("w", 2, 3, true), b("b", 1, 3, false);
  w.value = random_matrix(2, 3, 1);
  b.value = random_matrix(1, 3, 2);
  const mat w0 = w.value, b0 = b.value;
  encoder::adamw_options o;
  o.weight_decay = 0.1;
  encoder::adamw<double> opt({&w, &b}, o);
  // Scalar reference for one entry of each.
  double rw = w0(1, 2), rb = b0(0, 1), mw = 0, vw = 0, mb = 0, vb = 0;
  const double lrs[] = {0.01, 0.02, 0.005};
  for (int t = 1; t <= 3; ++t) {
    opt.zero_grad();
    w.grad = random_matrix(2, 3, 10 + static_cast<std::uint64_t>(t));
    b.grad = random_matrix(1, 3, 20 + static_cast<std::uint64_t>(t));
    const double gw = w.grad(1, 2), gb = b.grad(0, 1), lr = lrs[t - 1];
    opt.step(lr);
    rw *= 1 - lr * o.weight_decay;  // decoupled decay (weights only)
    mw = o.beta1 * mw + (1 - o.beta1) * gw;
    vw = o.beta2 * vw + (1 - o.beta2) * gw * gw;
    rw -= lr * (mw / (1 - std::pow(o.beta1, t))) /
          (std::sqrt(vw / (1 - std::pow(o.beta2, t))) + o.eps);
    mb = o.beta1 * mb + (1 - o.beta1) * gb;
    vb = o.beta2 * vb + (1 - o.beta2) * gb * gb;
    rb -= lr * (mb / (1 - std::pow(o.beta1, t))) /
          (std::sqrt(vb / (1 - std::pow(o.beta2, t))) + o.eps);
    CHECK(w.value(1, 2) == Approx(rw).epsilon(1e-12));
    CHECK(b.value(0, 1) == Approx(rb).epsilon(1e-12));
  }
  CHECK(opt.steps() == 3);
}

TEST_CASE("adamw: first step moves each weight by lr against its gradient's sign",
          "[encoder][adamw]") {
  encoder::parameter<double> w("w", 1, 2, false);
  w.value << 1.0, -1.0;
  w.grad << 3.0, -0.5;
  encoder::adamw<double> opt({&w}, encoder::adamw_options{});
  opt.step(0.1);
  CHECK(w.value(0, 0) == Approx(0.9).epsilon(1e-6));
  CHECK(w.value(0, 1) == Approx(-0.9).epsilon(1e-6));
  CHECK_THROWS_AS(opt.step(-1), encoder::error);
  CHECK_THROWS_AS(encoder::adamw<double>({&w}, encoder::adamw_options{1.0}), encoder::error);
}

TEST_CASE("adamw minimises a least-squares problem", "[encoder][adamw]") {
  const mat a = random_matrix(20, 4, 3), target = random_matrix(4, 1, 4);
  const mat y = a * target;
  encoder::parameter<double> x("x", 4, 1, false);
  encoder::adamw<double> opt({&x}, encoder::adamw_options{});
  encoder::cosine_schedule sched{0.05, 20, 2000, 0};
  for (long s = 0; s < 2000; ++s) {
    x.grad = 2 * a.transpose() * (a * x.value - y) / 20.0;
    opt.step(sched(s));
  }
  CHECK((x.value - target).cwiseAbs().maxCoeff() < 1e-3);
}

TEST_CASE("cosine schedule with warm-up", "[encoder][schedule]") {
  const encoder::cosine_schedule s{1.0, 10, 111, 0.1};
  CHECK(s(0) == Approx(0.1));
  CHECK(s(4) == Approx(0.5));
  CHECK(s(9) == Approx(1.0));
  CHECK(s(10) == Approx(1.0));   // start of the cosine
  CHECK(s(60) == Approx(0.55));  // half way: (base + min) / 2
  CHECK(s(110) == Approx(0.1));  // last step: min
  CHECK(s(500) == Approx(0.1));
  for (long k = 10; k < 110; ++k) CHECK(s(k + 1) <= s(k));
  const encoder::cosine_schedule flat{0.5, 0, 1, 0};
  CHECK(flat(0) == Approx(0.5));
}

TEST_CASE("checkpoint round trip restores every parameter bit for bit", "[encoder][checkpoint]") {
  auto a = encoder::make_mlp_encoder<float>("enc", 12, {8, 6}, 1);
  auto b = encoder::make_mlp_encoder<float>("enc", 12, {8, 6}, 2);
  const auto path = temp_path("roundtrip.ckpt");
  encoder::save_checkpoint(path, a.parameters());
  REQUIRE(a.parameters()[0]->value != b.parameters()[0]->value);
  encoder::load_checkpoint(path, b.parameters());
  for (std::size_t k = 0; k < a.parameters().size(); ++k)
    CHECK(a.parameters()[k]->value == b.parameters()[k]->value);
}

TEST_CASE("checkpoint errors are clear and leave the model untouched", "[encoder][checkpoint]") {
  auto a = encoder::make_mlp_encoder<float>("enc", 12, {8, 6}, 1);
  const auto path = temp_path("errors.ckpt");
  encoder::save_checkpoint(path, a.parameters());
  const auto good = read_all(path);
  auto target = encoder::make_mlp_encoder<float>("enc", 12, {8, 6}, 9);
  const mat before = target.parameters()[0]->value.cast<double>();
  auto unchanged = [&] {
    return (target.parameters()[0]->value.cast<double>() - before).cwiseAbs().maxCoeff() == 0;
  };

  SECTION("missing file") {
    CHECK_THROWS_WITH(encoder::load_checkpoint(temp_path("nope.ckpt"), target.parameters()),
                      Catch::Contains("cannot open"));
  }
  SECTION("wrong magic") {
    auto d = good;
    d[0] = 'X';
    write_all(path, d);
    CHECK_THROWS_WITH(encoder::load_checkpoint(path, target.parameters()),
                      Catch::Contains("bad magic"));
  }
  SECTION("newer version") {
    auto d = good;
    d[8] = 2;
    write_all(path, d);
    CHECK_THROWS_WITH(encoder::load_checkpoint(path, target.parameters()),
                      Catch::Contains("format version 2"));
  }
  SECTION("truncated") {
    auto d = good;
    d.resize(d.size() - 100);
    write_all(path, d);
    CHECK_THROWS_WITH(encoder::load_checkpoint(path, target.parameters()),
                      Catch::Contains("truncated"));
  }
  SECTION("corrupted value") {
    auto d = good;
    d[d.size() - 9] ^= 0x10;  // the last value byte, before the checksum
    write_all(path, d);
    CHECK_THROWS_WITH(encoder::load_checkpoint(path, target.parameters()),
                      Catch::Contains("checksum mismatch"));
  }
  SECTION("trailing bytes") {
    auto d = good;
    d.push_back(0);
    write_all(path, d);
    CHECK_THROWS_WITH(encoder::load_checkpoint(path, target.parameters()),
                      Catch::Contains("trailing"));
  }
  SECTION("other architecture") {
    auto other = encoder::make_mlp_encoder<float>("enc", 12, {8, 5}, 1);
    encoder::save_checkpoint(path, other.parameters());
    CHECK_THROWS_WITH(
        encoder::load_checkpoint(path, target.parameters()),
        Catch::Contains("'enc.3.weight' (8x5)") && Catch::Contains("expects 'enc.3.weight' (8x6)"));
  }
  SECTION("other tensor count") {
    auto other = encoder::make_mlp_encoder<float>("enc", 12, {8}, 1);
    encoder::save_checkpoint(path, other.parameters());
    CHECK_THROWS_WITH(encoder::load_checkpoint(path, target.parameters()),
                      Catch::Contains("holds 4 tensors, the model has 8"));
  }
  SECTION("other scalar type") {
    auto dbl = encoder::make_mlp_encoder<double>("enc", 12, {8, 6}, 1);
    encoder::save_checkpoint(path, dbl.parameters());
    CHECK_THROWS_WITH(encoder::load_checkpoint(path, target.parameters()),
                      Catch::Contains("64-bit scalars, the model uses 32-bit"));
  }
  CHECK(unchanged());
}
