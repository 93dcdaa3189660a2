// The synthetic experiment of docs/gamma_nce.md#synthetic-experiment (a [RECON] protocol: the
// paper's full text was not available; this implements the reconstruction described there;
// its numbers are what this reconstruction gives, not the paper's).
//
// Model: one scalar theta; a candidate with feature x scores theta * x. Negatives x ~ U[-1, 1];
// positives x+ = mu + 0.3 N(0, 1) with mu = coth(1) - 1, so the infinite-negative loss
// L(theta) = -theta mu + log(sinh(theta)/theta) has its optimum at theta* = 1 exactly. Plain SGD
// with eta_t = 0.5 / (1 + t/2000), one positive and B fresh negatives per step; the reported
// value is the mean of the iterates over the second half of training, as mean +- sd over seeds.
//
// Every gradient goes through the library's losses, on a batch of N = B + 1 rows with D = 1 and
// temperature 1: a = [theta; 0; ...; 0], b = [x+; x_1; ...; x_B]. Row 0 is the anchor (sample id
// 0); the other rows only make the batch square, and dL/da_00 (reduction sum) is the anchor's
// gradient in theta. Methods:
//   InfoNCE         info_nce (one direction): the positive is in the denominator
//   log-mean-exp    gamma_nce, same-batch rate, alpha = infinity (r = 1): negatives only
//   SEM same batch  gamma_nce, same-batch rate, alpha = 1
//   SEM exact a=1   gamma_nce, exact rate log(sinh(theta)/theta), alpha = 1
//   SEM EMA a=1     gamma_nce, normalizer_state (one global entry, id 0), beta = 0.1, alpha = 1
//   SEM EMA a=16    the same with alpha = 16
//
// Usage: gamma_synthetic [--quick] [--steps N] [--seeds K] [--batch-sizes 2,4,16,64]
//                        [--threads T] [--svg PATH] [--check]
//   --quick   5000 steps (the smoke test); the full protocol is 30000 steps, 10 seeds
//   --check   exit 1 unless the acceptance properties hold (bands widened for short runs)
//   --svg     where to write the plot of every run (default gamma_synthetic.svg; "" for none)

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <contrastive/contrastive.hpp>

namespace {

using rmat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

enum method { infonce, log_mean_exp, sem_same, sem_exact, sem_ema1, sem_ema16, method_count };
const char* const method_name[method_count] = {"InfoNCE",       "log-mean-exp", "SEM same batch",
                                               "SEM exact a=1", "SEM EMA a=1",  "SEM EMA a=16"};
const char* const method_header[method_count] = {
    "InfoNCE (pos. in denom.)", "log-mean-exp (neg. only)", "SEM, rate same batch",
    "SEM, exact rate, alpha=1", "SEM, EMA, alpha=1",        "SEM, EMA, alpha=16"};

const double mu = 1.0 / std::tanh(1.0) - 1.0;  // coth(1) - 1 = 0.3130352855

struct config {
  int steps = 30000;
  int seeds = 10;
  std::vector<int> batch_sizes = {2, 4, 16, 64};
  int threads = 0;
  std::string svg = "gamma_synthetic.svg";
  bool check = false;
  int trace_points = 200;
};

struct run_result {
  double tail_mean = 0;
  std::vector<double> trace;  // theta_0, then the running estimate at trace_points steps
  bool finite = true;
};

/// log(sinh(t)/t), stable for small and large |t|.
double log_sinhc(double t) {
  t = std::abs(t);
  if (t < 1e-4) return t * t / 6.0;
  return t + std::log(-std::expm1(-2 * t)) - std::log(2 * t);
}

/// The data of one step: the positive and B negatives, from Philox (key = seed's data key,
/// counter id = step, stream 4); theta_0 from stream 5. Common to every method of a seed.
struct data_source {
  std::uint64_t key;
  explicit data_source(int seed) : key((std::uint64_t(seed) << 32) | 0xDA7Au) {}
  double theta0() const {
    return 2.0 *
           contrastive::uniform_open01(contrastive::philox_stream{key, 0, 0, 5}.block(0).w[0]);
  }
  void step(int t, int b, double* out) const {  // out[0] = x+, out[1..b] = negatives
    const contrastive::philox_stream s{key, std::uint64_t(t), 0, 4};
    const contrastive::philox_block b0 = s.block(0);
    out[0] = mu + 0.3 * contrastive::box_muller(b0.w[0], b0.w[1]);
    for (int j = 0; j < b; ++j) {
      const contrastive::philox_block w = s.block(1 + std::uint32_t(j / 4));
      out[1 + j] = 2.0 * contrastive::uniform_open01(w.w[j % 4]) - 1.0;
    }
  }
};

run_result train(method m, int batch, int seed, const config& cfg) {
  const int n = batch + 1;
  const data_source data(seed);
  rmat a = rmat::Zero(n, 1), b(n, 1), ga(n, 1), gb(n, 1);
  std::vector<std::int64_t> ids(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) ids[i] = i;
  contrastive::normalizer_state state(n, 1);
  std::vector<double> exact(static_cast<std::size_t>(n), 0.0);

  contrastive::info_nce_options io;
  io.temperature = 1.0;
  io.symmetric = false;
  io.reduction = contrastive::loss_reduction::sum;
  io.num_threads = 1;
  contrastive::gamma_nce_options go;
  go.temperature = 1.0;
  go.symmetric = false;
  go.reduction = contrastive::loss_reduction::sum;
  go.num_threads = 1;
  go.seed = std::uint64_t(seed);
  go.beta = 0.1;
  switch (m) {
    case log_mean_exp:
      go.rate_source = contrastive::gamma_rate_source::same_batch;
      go.alpha = contrastive::gamma_nce_options::deterministic;
      break;
    case sem_same:
      go.rate_source = contrastive::gamma_rate_source::same_batch;
      go.alpha = 1.0;
      break;
    case sem_exact:
      go.rate_source = contrastive::gamma_rate_source::exact;
      go.exact_log_normalizer_a = exact;
      go.alpha = 1.0;
      break;
    case sem_ema1:
      go.alpha = 1.0;
      break;
    case sem_ema16:
      go.alpha = 16.0;
      break;
    default:
      break;
  }
  std::vector<unsigned char> ws_buf(
      std::max(contrastive::info_nce_workspace_bytes<double>(n, 1, io),
               contrastive::gamma_nce_workspace_bytes<double>(n, 1, go)));
  const contrastive::workspace ws{ws_buf.data(), ws_buf.size()};

  run_result r;
  r.trace.reserve(static_cast<std::size_t>(cfg.trace_points) + 1);
  double theta = data.theta0();
  r.trace.push_back(theta);
  const int tail_from = cfg.steps / 2;
  double tail_sum = 0;
  std::vector<double> x(static_cast<std::size_t>(n));
  // prefix[t] = sum of the iterates after steps 0..t-1, for the running estimate of the plot.
  std::vector<double> prefix(static_cast<std::size_t>(cfg.steps) + 1, 0.0);
  int next_trace = 1;
  for (int t = 0; t < cfg.steps; ++t) {
    data.step(t, batch, x.data());
    for (int i = 0; i < n; ++i) b(i, 0) = x[i];
    a(0, 0) = theta;
    double g;
    if (m == infonce) {
      (void)contrastive::info_nce_forward_backward(a, b, ga, gb, io, nullptr, ws);
    } else {
      go.step = std::uint32_t(t);
      exact[0] = log_sinhc(theta);
      if (m == sem_ema1 || m == sem_ema16)
        (void)contrastive::gamma_nce_forward_backward(a, b, ids, state, ga, gb, go, nullptr, ws);
      else
        (void)contrastive::gamma_nce_forward_backward(a, b, ids, ga, gb, go, nullptr, ws);
    }
    g = ga(0, 0);
    theta -= 0.5 / (1.0 + t / 2000.0) * g;
    if (!std::isfinite(theta)) {
      r.finite = false;
      break;
    }
    if (t >= tail_from) tail_sum += theta;
    prefix[t + 1] = prefix[t] + theta;
    if (next_trace <= cfg.trace_points &&
        (t + 1) >= static_cast<long long>(next_trace) * cfg.steps / cfg.trace_points) {
      // Running estimate: the mean of the iterates after steps t/2 .. t (the reported value at t).
      const int hi = t + 1, lo = hi / 2;
      r.trace.push_back((prefix[hi] - prefix[lo]) / double(hi - lo));
      ++next_trace;
    }
  }
  r.tail_mean = r.finite ? tail_sum / double(cfg.steps - tail_from) : NAN;
  return r;
}

struct cell {
  double mean = 0, sd = 0;
};

cell summarise(const std::vector<run_result>& runs) {
  cell c;
  const double k = double(runs.size());
  for (const auto& r : runs) c.mean += r.tail_mean / k;
  for (const auto& r : runs) c.sd += (r.tail_mean - c.mean) * (r.tail_mean - c.mean);
  c.sd = runs.size() > 1 ? std::sqrt(c.sd / (k - 1)) : 0.0;
  return c;
}

std::string fmt(double v, int prec) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", prec, v);
  return buf;
}

// ------------------------------------------------------------------------------------- plot
void write_svg(const std::string& path, const config& cfg,
               const std::vector<std::vector<std::vector<run_result>>>& runs) {
  const int rows = int(cfg.batch_sizes.size()), cols = method_count;
  const double pw = 230, ph = 170, ml = 70, mt = 80, gap_x = 25, gap_y = 45;
  const double width = ml + cols * (pw + gap_x) + 10, height = mt + rows * (ph + gap_y) + 20;
  std::ostringstream o;
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
    << "\" viewBox=\"0 0 " << width << " " << height << "\" font-family=\"sans-serif\">\n";
  o << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  o << "<text x=\"" << ml << "\" y=\"24\" font-size=\"15\">theta over " << cfg.steps
    << " SGD steps: running estimate at step t = mean of the iterates after steps t/2 .. t; "
    << cfg.seeds << " runs per panel; dashed: theta* = 1</text>\n";
  o << "<text x=\"" << ml
    << "\" y=\"42\" font-size=\"12\">blue: in-batch losses; orange: gamma "
       "SEM with the same-batch rate (biased); red: gamma SEM with the exact or moving-average "
       "rate; "
       "panel titles: final theta (mean of the second-half iterates), mean +- sd over "
       "runs</text>\n";
  for (int ri = 0; ri < rows; ++ri) {
    for (int m = 0; m < cols; ++m) {
      const auto& rs = runs[ri][m];
      const double x0 = ml + m * (pw + gap_x), y0 = mt + ri * (ph + gap_y);
      double lo = 0.0, hi = 2.0;
      for (const auto& r : rs)
        for (const double v : r.trace)
          if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
      hi = std::ceil(std::min(hi, 12.0) * 2) / 2;
      lo = std::floor(std::max(lo, -2.0) * 2) / 2;
      const double span = hi - lo;
      auto ypix = [&](double v) {
        return y0 + ph - (std::min(std::max(v, lo), hi) - lo) / span * ph;
      };
      o << "<rect x=\"" << x0 << "\" y=\"" << y0 << "\" width=\"" << pw << "\" height=\"" << ph
        << "\" fill=\"none\" stroke=\"#444\"/>\n";
      if (ri == 0)
        o << "<text x=\"" << x0 + pw / 2 << "\" y=\"" << y0 - 22
          << "\" font-size=\"12\" text-anchor=\"middle\">" << method_name[m] << "</text>\n";
      o << "<text x=\"" << x0 + pw / 2 << "\" y=\"" << y0 - 6
        << "\" font-size=\"11\" text-anchor=\"middle\">B = " << cfg.batch_sizes[ri] << ": "
        << fmt(summarise(rs).mean, 3) << " +- " << fmt(summarise(rs).sd, 3) << "</text>\n";
      for (const double tick : {lo, 1.0, hi}) {
        if (tick == 1.0 && (ypix(lo) - ypix(1.0) < 16 || ypix(1.0) - ypix(hi) < 16)) continue;
        o << "<text x=\"" << x0 - 4 << "\" y=\"" << ypix(tick) + 4
          << "\" font-size=\"10\" text-anchor=\"end\">" << fmt(tick, 1) << "</text>\n";
      }
      const char* colour = (m == infonce || m == log_mean_exp) ? "#1f5fbf"
                           : m == sem_same                     ? "#e08a00"
                                                               : "#d62728";
      for (const auto& r : rs) {
        o << "<polyline fill=\"none\" stroke=\"" << colour
          << "\" stroke-opacity=\"0.6\" stroke-width=\"1\" points=\"";
        const std::size_t k = r.trace.size();
        for (std::size_t p = 0; p < k; ++p) {
          if (!std::isfinite(r.trace[p])) break;
          const double xp = x0 + pw * double(p) / double(cfg.trace_points);
          o << fmt(xp, 1) << "," << fmt(ypix(r.trace[p]), 1) << " ";
        }
        o << "\"/>\n";
      }
      o << "<line x1=\"" << x0 << "\" x2=\"" << x0 + pw << "\" y1=\"" << ypix(1.0) << "\" y2=\""
        << ypix(1.0) << "\" stroke=\"#000\" stroke-dasharray=\"5,3\"/>\n";
      if (ri == rows - 1)
        o << "<text x=\"" << x0 + pw / 2 << "\" y=\"" << y0 + ph + 16
          << "\" font-size=\"10\" text-anchor=\"middle\">step (0 .. " << cfg.steps << ")</text>\n";
    }
  }
  o << "</svg>\n";
  std::ofstream f(path, std::ios::trunc);
  f << o.str();
  if (!f) std::fprintf(stderr, "gamma_synthetic: could not write %s\n", path.c_str());
}

// ------------------------------------------------------------------------------------ checks
struct checker {
  bool ok = true;
  void expect(bool cond, const std::string& what) {
    std::printf("  [%s] %s\n", cond ? "pass" : "FAIL", what.c_str());
    ok = ok && cond;
  }
};

int usage(const char* argv0) {
  std::fprintf(
      stderr,
      "usage: %s [--quick] [--steps N] [--seeds K] [--batch-sizes 2,4,16,64] [--threads T] "
      "[--svg PATH] [--check]\n",
      argv0);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  config cfg;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "gamma_synthetic: %s needs a value\n", arg.c_str());
        std::exit(usage(argv[0]));
      }
      return argv[++i];
    };
    if (arg == "--quick") {
      cfg.steps = 5000;
    } else if (arg == "--steps") {
      cfg.steps = std::atoi(next().c_str());
    } else if (arg == "--seeds") {
      cfg.seeds = std::atoi(next().c_str());
    } else if (arg == "--threads") {
      cfg.threads = std::atoi(next().c_str());
    } else if (arg == "--svg") {
      cfg.svg = next();
    } else if (arg == "--check") {
      cfg.check = true;
    } else if (arg == "--batch-sizes") {
      cfg.batch_sizes.clear();
      std::stringstream ss(next());
      std::string tok;
      while (std::getline(ss, tok, ',')) cfg.batch_sizes.push_back(std::atoi(tok.c_str()));
    } else {
      return usage(argv[0]);
    }
  }
  if (cfg.steps < 100 || cfg.seeds < 1 || cfg.batch_sizes.empty() ||
      *std::min_element(cfg.batch_sizes.begin(), cfg.batch_sizes.end()) < 1) {
    std::fprintf(stderr,
                 "gamma_synthetic: need --steps >= 100, --seeds >= 1 and batch sizes >= 1\n");
    return 2;
  }
  cfg.trace_points = std::min(cfg.trace_points, cfg.steps);
  int threads = cfg.threads > 0 ? cfg.threads : int(std::thread::hardware_concurrency());
  threads = std::max(1, threads);

  const auto t0 = std::chrono::steady_clock::now();
  const int nb = int(cfg.batch_sizes.size());
  std::vector<std::vector<std::vector<run_result>>> runs(
      nb, std::vector<std::vector<run_result>>(method_count, std::vector<run_result>(cfg.seeds)));
  // Jobs, largest batches first so that the threads finish together.
  std::vector<int> jobs;
  for (int bi = nb - 1; bi >= 0; --bi)
    for (int m = 0; m < method_count; ++m)
      for (int s = 0; s < cfg.seeds; ++s) jobs.push_back((bi * method_count + m) * cfg.seeds + s);
  std::atomic<std::size_t> next_job{0};
  auto worker = [&]() {
    for (std::size_t j; (j = next_job.fetch_add(1)) < jobs.size();) {
      const int id = jobs[j];
      const int s = id % cfg.seeds, m = (id / cfg.seeds) % method_count,
                bi = id / cfg.seeds / method_count;
      runs[bi][m][s] = train(method(m), cfg.batch_sizes[bi], s, cfg);
    }
  };
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back(worker);
  for (auto& t : pool) t.join();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  std::printf(
      "gamma_synthetic: theta* = 1.0 (mu = coth(1) - 1 = %.10f), %d SGD steps, eta_t = 0.5/(1 + "
      "t/2000),\n"
      "final theta = mean of the iterates of steps %d..%d, mean +- sd over seeds 0..%d\n\n",
      mu, cfg.steps, cfg.steps / 2, cfg.steps - 1, cfg.seeds - 1);
  std::printf("| B |");
  for (int m = 0; m < method_count; ++m) std::printf(" %s |", method_header[m]);
  std::printf("\n|---|");
  for (int m = 0; m < method_count; ++m) std::printf("---|");
  std::printf("\n");
  std::vector<std::vector<cell>> table(nb, std::vector<cell>(method_count));
  bool all_finite = true;
  for (int bi = 0; bi < nb; ++bi) {
    std::printf("| %d |", cfg.batch_sizes[bi]);
    for (int m = 0; m < method_count; ++m) {
      for (const auto& r : runs[bi][m]) all_finite = all_finite && r.finite;
      table[bi][m] = summarise(runs[bi][m]);
      std::printf(" %.3f +- %.3f |", table[bi][m].mean, table[bi][m].sd);
    }
    std::printf("\n");
  }
  std::printf("\n%d runs in %.1f s on %d thread(s)\n", nb * method_count * cfg.seeds, seconds,
              threads);
  if (!cfg.svg.empty()) {
    write_svg(cfg.svg, cfg, runs);
    std::printf("plot: %s\n", cfg.svg.c_str());
  }

  if (!cfg.check) return 0;
  // Acceptance (docs/gamma_nce.md#synthetic-experiment) for the full protocol; shorter runs are
  // noisier in proportion to
  // 1/sqrt(steps), so the noise-limited bands widen by sqrt(30000/steps) (never tighter).
  const double widen = std::max(1.0, std::sqrt(30000.0 / cfg.steps));
  auto col = [&](int b, method m) -> const cell* {
    for (int bi = 0; bi < nb; ++bi)
      if (cfg.batch_sizes[bi] == b) return &table[bi][m];
    return nullptr;
  };
  checker c;
  std::printf("\nacceptance (bands widened by %.2f for %d steps):\n", widen, cfg.steps);
  c.expect(all_finite, "every run stays finite");
  for (int bi = 0; bi < nb; ++bi) {
    const int b = cfg.batch_sizes[bi];
    const double e = table[bi][sem_exact].mean;
    c.expect(std::abs(e - 1) < 0.03 * widen, "B = " + std::to_string(b) + ": exact rate |" +
                                                 fmt(e, 3) + " - 1| < " + fmt(0.03 * widen, 3));
  }
  if (const cell* x = col(2, infonce))
    c.expect(x->mean > 1.1, "B = 2: InfoNCE " + fmt(x->mean, 3) + " > 1.1");
  if (const cell* x = col(4, infonce))
    c.expect(x->mean > 1.1, "B = 4: InfoNCE " + fmt(x->mean, 3) + " > 1.1");
  if (const cell* x = col(2, infonce))
    c.expect(std::abs(x->mean - 1.29) < 0.03 * widen,
             "B = 2: InfoNCE within " + fmt(0.03 * widen, 3) + " of 1.29");
  if (const cell* x = col(4, infonce))
    c.expect(std::abs(x->mean - 1.16) < 0.02 * widen,
             "B = 4: InfoNCE within " + fmt(0.02 * widen, 3) + " of 1.16");
  if (const cell* x = col(16, infonce))
    c.expect(std::abs(x->mean - 1.04) < 0.015 * widen,
             "B = 16: InfoNCE within " + fmt(0.015 * widen, 3) + " of 1.04");
  if (const cell* x = col(2, log_mean_exp))
    c.expect(x->mean > 3, "B = 2: log-mean-exp " + fmt(x->mean, 3) + " > 3");
  if (const cell* x = col(2, sem_same))
    c.expect(x->mean > 3, "B = 2: SEM same batch " + fmt(x->mean, 3) + " > 3");
  for (const int b : {4, 16}) {
    const cell* x = col(b, log_mean_exp);
    const cell* y = col(b, sem_same);
    if (x && y)
      c.expect(std::abs(x->mean - y->mean) < 0.05 * widen,
               "B = " + std::to_string(b) + ": same-batch SEM and log-mean-exp within " +
                   fmt(0.05 * widen, 3));
  }
  for (int bi = 0; bi < nb; ++bi) {
    const int b = cfg.batch_sizes[bi];
    const double band = (b == 2 ? 0.10 : 0.05) * widen;
    for (const method m : {sem_ema1, sem_ema16}) {
      const double e = table[bi][m].mean;
      c.expect(std::abs(e - 1) < band, "B = " + std::to_string(b) + ": " + method_name[m] + " " +
                                           fmt(e, 3) + " within " + fmt(band, 3) + " of 1");
    }
  }
  std::printf("%s\n", c.ok ? "all acceptance checks passed" : "SOME ACCEPTANCE CHECKS FAILED");
  return c.ok ? 0 : 1;
}
