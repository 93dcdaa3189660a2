// Data-parallel two-tower training with the distributed CLIP loss (contrastive/distributed/), launched
// with mpirun: every rank holds a replica of the two towers (examples/encoder/), embeds its share
// of the global batch, and distributed::info_nce_forward_backward gives it the gradients of the GLOBAL
// CLIP loss for its own rows. Backpropagating those through the local replica gives a partial
// parameter gradient; the sum (not the mean) over the ranks is the gradient of the global loss,
// so one all-reduce SUM per step and identical AdamW steps keep the replicas equal.
//
//   mpirun -np 2 distributed_clip [--steps 30] [--batch 256] [--check]
//   mpirun -np 2 distributed_clip --bench 16384 512 [--reps 3]     (time and peak memory)
//   mpirun -np 1 distributed_clip --bench 16384 512 --plain        (single-process library call)
//
// The data are synthetic and generated per sample id (two noisy linear views of a shared latent),
// so every rank makes its own rows and any rank count sees the same global batches. --check also
// trains, on every rank, a single-process replica on the whole global batch with the plain
// info_nce call and fails (exit 1) unless both runs give the same losses and weights (to float
// rounding) and the loss fell.

#include <mpi.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <contrastive/contrastive.hpp>
#include <contrastive/distributed/info_nce.hpp>
#include <contrastive/distributed/mpi.hpp>

#include "encoder/common.hpp"
#include "encoder/layers.hpp"
#include "encoder/optim.hpp"

namespace {

using encoder::index_t;
using fmat = encoder::matrix<float>;
using contrastive::distributed::mpi_communicator;
using contrastive::distributed::reduce_op;

struct settings {
  int steps = 30;
  index_t batch = 256;
  bool check = false;
  index_t bench_n = 0, bench_d = 0;
  int reps = 3;
  bool plain = false;
  std::uint64_t seed = 7;
};

constexpr index_t latent_dim = 16, dim_a = 32, dim_b = 24, samples = 8192;

/// Rows [first, first + count) of the shard of rank r when n rows are cut as evenly as possible.
void shard(index_t n, int p, int r, index_t& first, index_t& count) {
  count = n / p + (r < n % p ? 1 : 0);
  first = r * (n / p) + std::min<index_t>(r, n % p);
}

/// Both views of the given dataset ids: x_a = W_a z + noise, x_b = W_b z + noise, z ~ N(0, I).
void make_views(const std::vector<index_t>& ids, std::uint64_t seed, fmat& xa, fmat& xb) {
  auto proj = [&](index_t rows, std::uint64_t id) {
    fmat w(rows, latent_dim);
    encoder::rng r(seed, id, 0, encoder::stream_init);
    for (index_t i = 0; i < w.size(); ++i)
      w.data()[i] = static_cast<float>(r.normal() / std::sqrt(double(latent_dim)));
    return w;
  };
  const fmat wa = proj(dim_a, 1), wb = proj(dim_b, 2);
  xa.resize(static_cast<index_t>(ids.size()), dim_a);
  xb.resize(static_cast<index_t>(ids.size()), dim_b);
  for (std::size_t i = 0; i < ids.size(); ++i) {
    encoder::rng r(seed, static_cast<std::uint64_t>(ids[i]), 0, encoder::stream_misc);
    Eigen::VectorXf z(latent_dim);
    for (index_t k = 0; k < latent_dim; ++k) z(k) = static_cast<float>(r.normal());
    const Eigen::VectorXf a = wa * z, b = wb * z;
    for (index_t k = 0; k < dim_a; ++k)
      xa(static_cast<index_t>(i), k) = a(k) + static_cast<float>(0.3 * r.normal());
    for (index_t k = 0; k < dim_b; ++k)
      xb(static_cast<index_t>(i), k) = b(k) + static_cast<float>(0.3 * r.normal());
  }
}

/// One tower: MLP backbone -> projection head -> L2 norm.
struct tower {
  encoder::sequential<float> backbone, head;
  encoder::l2_norm<float> norm;
  tower(const std::string& name, index_t in, std::uint64_t seed)
      : backbone(encoder::make_mlp_encoder<float>(name + ".backbone", in, {64}, seed,
                                                  encoder::activation::gelu, false)),
        head(encoder::make_projection_head<float>(name + ".head", 64, 64, 32, seed)) {}
  fmat forward(const fmat& x) { return norm.forward(head.forward(backbone.forward(x))); }
  void backward(const fmat& g) { backbone.backward(head.backward(norm.backward(g))); }
};

struct model {
  tower a, b;
  std::vector<encoder::parameter<float>*> params;
  encoder::adamw<float> opt;
  explicit model(std::uint64_t seed)
      : a("a", dim_a, seed), b("b", dim_b, seed), params(collect()), opt(params, {}) {}
  std::vector<encoder::parameter<float>*> collect() {
    auto p = a.backbone.parameters();
    for (auto* q : a.head.parameters()) p.push_back(q);
    for (auto* q : b.backbone.parameters()) p.push_back(q);
    for (auto* q : b.head.parameters()) p.push_back(q);
    return p;
  }
};

/// The global batch of a step (ids in global row order).
std::vector<index_t> batch_ids(index_t batch, int step) {
  std::vector<index_t> ids(static_cast<std::size_t>(batch));
  for (index_t i = 0; i < batch; ++i)
    ids[static_cast<std::size_t>(i)] = (step * batch + i * 37) % samples;
  return ids;
}

/// Sums the parameter gradients over the ranks: one all-reduce of one packed buffer.
void all_reduce_gradients(const mpi_communicator& comm,
                          const std::vector<encoder::parameter<float>*>& params) {
  std::vector<float> buf;
  for (auto* p : params) buf.insert(buf.end(), p->grad.data(), p->grad.data() + p->grad.size());
  comm.all_reduce(buf.data(), buf.size(), reduce_op::sum);
  std::size_t at = 0;
  for (auto* p : params) {
    std::copy(buf.begin() + static_cast<std::ptrdiff_t>(at),
              buf.begin() + static_cast<std::ptrdiff_t>(at + p->grad.size()), p->grad.data());
    at += static_cast<std::size_t>(p->grad.size());
  }
}

int train(const mpi_communicator& comm, const settings& s) {
  const int p = comm.size(), r = comm.rank();
  contrastive::info_nce_options opt;  // CLIP, tau = 0.07
  opt.temperature = 0.1;
  model m(s.seed), ref(s.seed);  // ref: the single-process replica (--check)
  const double lr = 2e-3;
  double first = 0, last = 0, worst_loss = 0, worst_grad = 0;
  for (int step = 0; step < s.steps; ++step) {
    const std::vector<index_t> ids = batch_ids(s.batch, step);
    index_t first_row = 0, count = 0;
    shard(s.batch, p, r, first_row, count);
    fmat xa, xb;
    make_views(std::vector<index_t>(ids.begin() + first_row, ids.begin() + first_row + count),
               s.seed, xa, xb);

    m.opt.zero_grad();
    const fmat za = m.a.forward(xa), zb = m.b.forward(xb);
    fmat ga(za.rows(), za.cols()), gb(zb.rows(), zb.cols());
    const float loss =
        contrastive::distributed::info_nce_forward_backward(comm, za, zb, ga, gb, opt);
    m.a.backward(ga);
    m.b.backward(gb);
    all_reduce_gradients(comm, m.params);  // SUM: the loss is already global
    m.opt.step(lr);
    if (step == 0) first = loss;
    last = loss;

    double ref_loss = 0;
    if (s.check) {
      fmat ya, yb;
      make_views(ids, s.seed, ya, yb);
      ref.opt.zero_grad();
      const fmat wa = ref.a.forward(ya), wb = ref.b.forward(yb);
      fmat ha(wa.rows(), wa.cols()), hb(wb.rows(), wb.cols());
      ref_loss = contrastive::info_nce_forward_backward(wa, wb, ha, hb, opt);
      ref.a.backward(ha);
      ref.b.backward(hb);
      // The summed gradients themselves (AdamW would hide a wrong scale such as a mean).
      for (std::size_t k = 0; k < m.params.size(); ++k) {
        const fmat& x = m.params[k]->grad;
        const fmat& y = ref.params[k]->grad;
        worst_grad = std::max(worst_grad, double((x - y).cwiseAbs().maxCoeff()) /
                                              std::max(1e-12, double(y.cwiseAbs().maxCoeff())));
      }
      ref.opt.step(lr);
      worst_loss = std::max(worst_loss, std::abs(double(loss) - ref_loss) / std::abs(ref_loss));
    }
    if (r == 0 && (step % 5 == 0 || step == s.steps - 1)) {
      std::printf("step %3d  global batch %lld on %d rank(s)  CLIP loss %.6f", step,
                  static_cast<long long>(s.batch), p, double(loss));
      if (s.check) std::printf("  (one process: %.6f)", ref_loss);
      std::printf("\n");
    }
  }
  int failed = 0;
  if (s.check) {
    double worst_param = 0;
    for (std::size_t k = 0; k < m.params.size(); ++k) {
      const fmat& x = m.params[k]->value;
      const fmat& y = ref.params[k]->value;
      worst_param = std::max(worst_param, double((x - y).cwiseAbs().maxCoeff()) /
                                              std::max(1e-6, double(y.cwiseAbs().maxCoeff())));
    }
    const bool same = worst_loss < 1e-3 && worst_grad < 1e-3 && worst_param < 1e-3;
    const bool fell = last < 0.8 * first;
    if (r == 0)
      std::printf(
          "check: loss %.4f -> %.4f (%s); vs one process, max rel. diff: loss %.2e, gradients "
          "%.2e, "
          "weights %.2e (%s)\n",
          first, last, fell ? "fell" : "did NOT fall", worst_loss, worst_grad, worst_param,
          same ? "equal" : "DIFFERENT");
    failed = same && fell ? 0 : 1;
  }
  std::int64_t f = failed;
  comm.all_reduce(&f, 1, reduce_op::max);
  return f != 0 ? 1 : 0;
}

long peak_rss_kib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss;  // KiB on Linux
}

int bench(const mpi_communicator& comm, const settings& s) {
  const int p = comm.size(), r = comm.rank();
  const index_t n = s.bench_n, d = s.bench_d;
  if (s.plain && p != 1) {
    if (r == 0) std::fprintf(stderr, "--plain runs the single-process call: use one rank\n");
    return 2;
  }
  index_t first = 0, count = 0;
  shard(n, p, r, first, count);
  // Unit rows seeded by global row id: the same global batch for any rank count.
  fmat a(count, d), b(count, d);
  for (index_t i = 0; i < count; ++i) {
    encoder::rng ra(s.seed, static_cast<std::uint64_t>(first + i), 1, encoder::stream_misc);
    for (index_t k = 0; k < d; ++k) {
      a(i, k) = static_cast<float>(ra.normal());
      b(i, k) = a(i, k) + static_cast<float>(0.5 * ra.normal());
    }
  }
  contrastive::l2_normalize(a, a);
  contrastive::l2_normalize(b, b);
  fmat ga(count, d), gb(count, d);
  contrastive::info_nce_options opt;  // CLIP
  auto run = [&] {
    return s.plain ? contrastive::info_nce_forward_backward(a, b, ga, gb, opt)
                   : contrastive::distributed::info_nce_forward_backward(comm, a, b, ga, gb, opt);
  };
  float loss = run();  // warm-up (page faults, thread team)
  std::vector<double> times;
  for (int k = 0; k < s.reps; ++k) {
    double sync = 0;
    comm.all_reduce(&sync, 1, reduce_op::sum);  // start together
    const auto t0 = std::chrono::steady_clock::now();
    loss = run();
    double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    comm.all_reduce(&t, 1, reduce_op::max);  // a step lasts as long as its slowest rank
    times.push_back(t);
  }
  std::sort(times.begin(), times.end());
  std::vector<std::int64_t> rss(static_cast<std::size_t>(p));
  const std::int64_t mine = peak_rss_kib();
  comm.all_gather(&mine, 1, rss.data());
  if (r == 0) {
    const char* threads = std::getenv("OMP_NUM_THREADS");
    std::printf(
        "%s CLIP forward+backward, fp32, N = %lld, D = %lld, %d rank(s), OMP_NUM_THREADS=%s\n",
        s.plain ? "single-process" : "distributed", static_cast<long long>(n),
        static_cast<long long>(d), p, threads ? threads : "(unset)");
    std::printf("  loss %.6f; time median %.3f s (min %.3f, max %.3f over %d runs)\n", double(loss),
                times[times.size() / 2], times.front(), times.back(), s.reps);
    for (int k = 0; k < p; ++k)
      std::printf(
          "  rank %d: peak RSS %.1f MiB (its inputs and gradients: %.1f MiB)\n", k,
          double(rss[static_cast<std::size_t>(k)]) / 1024.0,
          4.0 * double((n / p + (k < n % p ? 1 : 0)) * d) * sizeof(float) / (1024.0 * 1024.0));
  }
  return 0;
}

bool parse(int argc, char** argv, settings& s, int rank) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&](const char* what) -> const char* {
      if (i + 1 >= argc) throw std::runtime_error(std::string(a) + " needs " + what);
      return argv[++i];
    };
    if (a == "--steps")
      s.steps = std::atoi(next("a count"));
    else if (a == "--batch")
      s.batch = std::atoll(next("a size"));
    else if (a == "--check")
      s.check = true;
    else if (a == "--bench") {
      s.bench_n = std::atoll(next("N and D"));
      s.bench_d = std::atoll(next("D"));
    } else if (a == "--reps")
      s.reps = std::atoi(next("a count"));
    else if (a == "--plain")
      s.plain = true;
    else if (a == "--seed")
      s.seed = std::strtoull(next("a number"), nullptr, 10);
    else {
      if (rank == 0)
        std::printf(
            "usage: mpirun -np P distributed_clip [--steps S] [--batch N] [--check] [--seed K]\n"
            "       mpirun -np P distributed_clip --bench N D [--reps R] [--plain (1 rank)]\n");
      return a == "--help" || a == "-h" ? false
                                        : (throw std::runtime_error("unknown option " + a), false);
    }
  }
  if (s.steps < 1 || s.batch < 2 || s.reps < 1 ||
      (s.bench_n != 0 && (s.bench_n < 1 || s.bench_d < 1)))
    throw std::runtime_error("need --steps >= 1, --batch >= 2, --reps >= 1 and N, D >= 1");
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rc = 0;
  try {
    const mpi_communicator comm;
    settings s;
    if (!parse(argc, argv, s, comm.rank())) {
      MPI_Finalize();
      return 0;
    }
    if (s.batch < comm.size())
      throw std::runtime_error("--batch must be at least the number of ranks");
    rc = s.bench_n > 0 ? bench(comm, s) : train(comm, s);
  } catch (const std::exception& e) {
    // Options are parsed alike on every rank, and the library agrees on its errors, so every
    // rank gets here together.
    std::fprintf(stderr, "distributed_clip: %s\n", e.what());
    rc = 2;
  }
  MPI_Finalize();
  return rc;
}
