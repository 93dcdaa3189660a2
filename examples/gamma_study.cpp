// Does the gamma-auxiliary loss help small batches on real data? A seeded study on Fashion-MNIST
// in two settings: the two towers of train_two_tower (A = top half, B = noisy bottom half) and
// two augmented views of each image through one shared encoder with a symmetric InfoNCE between
// the views (MoCo-v3's loss). At equal epochs it compares CLIP at batch 256, 128 and 32 with the
// gamma loss at batch 64 and at batch 32 (alpha 1, alpha 16 and the deterministic SogCLR mode),
// over several seeds, and measures the gradient bias itself: at a fixed checkpoint, the cosine
// between each method's mini-batch gradient and the full-dataset gradient of the global loss.
// `gamma_study --help` lists the options; README "The gamma loss on real data" has the results.

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <functional>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <contrastive/contrastive.hpp>
#include <contrastive/losses/gamma_nce.hpp>
#include <contrastive/state/normalizer_state.hpp>

#include "encoder/encoder.hpp"
#include "encoder/two_tower.hpp"

namespace {

using encoder::index_t;
using fmat = encoder::matrix<float>;
using gvec = Eigen::VectorXd;

enum class setting_kind { two_tower, two_view };

struct settings {
  std::string data_dir, out_dir, settings_list = "two_tower,two_view", methods = "all";
  std::vector<std::uint64_t> seeds{1, 2, 3};
  bool validation = false, smoke = false, check = false, no_progress = false, no_bias = false;
  int jobs = 0;
  index_t train_size = 0, test_size = 0, validation_size = 10000;
  int epochs = 10;
  double lr = 2e-3, weight_decay = 0.05, warmup = 0.05;
  double tau_two_tower = 0.1, tau_two_view = 0.2;  // the defaults of train_two_tower, train_simclr
  double noise_b = 0.2;
  std::vector<index_t> hidden{256, 128};
  index_t head_hidden = 128, embed = 64;
  // Chosen on the validation split (README): beta 0.3 of {0.9, 0.5, 0.3, 0.1} (the library's
  // default is 0.9), update then sample, first-visit init; alpha 16 beat alpha 1 at batch 32.
  double gamma_beta = 0.3;
  std::string gamma_order = "update";  // update | sample
  std::string gamma_init = "first";    // first | pass
  double half_alpha = 16;              // alpha of the gamma loss at batch 64
  int bias_epoch = 1;
  int bias_warm_passes = 3;  // forward-only passes that fill the rate state at the checkpoint
  index_t bias_batches = 0;  // 0 = one whole epoch
  int probe_epochs = 20;
  double probe_lr = 3e-3;
  encoder::augment_options aug;  // the two-view setting's augmentations (train_simclr's)
  settings() {
    aug.crop_scale_min = 0.8;
    aug.max_shift = 1;
    aug.cutout_prob = 0.25;
  }
};

// ---- methods ----------------------------------------------------------------------------------

struct method_def {
  std::string key, name;
  index_t batch = 0;
  bool gamma = false;
  double alpha = 1;
  bool oracle = false;  // gradient-bias reference only: exact full-dataset rates (unbiased)
};

constexpr double deterministic = contrastive::gamma_nce_options::deterministic;

std::vector<method_def> make_methods(const settings& s) {
  return {
      {"clip-256", "CLIP", 256},
      {"clip-128", "CLIP", 128},
      {"gamma-64", "gamma, alpha " + encoder::detail::num(s.half_alpha), 64, true, s.half_alpha},
      {"clip-32", "CLIP", 32},
      {"gamma-32-a1", "gamma, alpha 1", 32, true, 1},
      {"gamma-32-a16", "gamma, alpha 16", 32, true, 16},
      {"sogclr-32", "gamma, deterministic (SogCLR)", 32, true, deterministic}};
}

/// The bias-only reference: the SogCLR weights with the exact full-dataset normalisers.
method_def oracle_method() {
  return {"oracle-32", "exact rates (unbiased reference)", 32, true, deterministic, true};
}

// ---- data -------------------------------------------------------------------------------------

/// One setting's data: training and evaluation sets, the two inputs of a batch, probe labels.
struct study_data {
  setting_kind kind = setting_kind::two_tower;
  std::string key, eval_name;  // "test" or "validation"
  double tau = 0.1;
  encoder::modalities tr, ev;             // two_tower
  encoder::image_dataset tr_img, ev_img;  // two_view
  fmat ev_view_a, ev_view_b;              // two_view: fixed augmented evaluation views
  const settings* s = nullptr;

  index_t n_train() const { return kind == setting_kind::two_tower ? tr.a.rows() : tr_img.size(); }
  index_t in_a() const {
    return kind == setting_kind::two_tower ? tr.a.cols() : tr_img.images.cols();
  }
  index_t in_b() const {
    return kind == setting_kind::two_tower ? tr.b_clean.cols() : tr_img.images.cols();
  }
  const std::vector<int>& train_labels() const {
    return kind == setting_kind::two_tower ? tr.labels : tr_img.labels;
  }
  const std::vector<int>& eval_labels() const {
    return kind == setting_kind::two_tower ? ev.labels : ev_img.labels;
  }
  /// The two inputs of training rows `ids` in `epoch` (fresh noise or augmentations per epoch).
  void views(const std::vector<index_t>& ids, std::uint64_t seed, std::uint32_t epoch, fmat& xa,
             fmat& xb) const {
    if (kind == setting_kind::two_tower) {
      xa = encoder::gather_rows(tr.a, ids);
      xb = encoder::noisy_b(tr, ids, seed, s->noise_b, epoch);
    } else {
      xa = encoder::augment_batch(tr_img.images, ids, tr_img.height, tr_img.width, s->aug, seed,
                                  epoch, encoder::stream_view_a);
      xb = encoder::augment_batch(tr_img.images, ids, tr_img.height, tr_img.width, s->aug, seed,
                                  epoch, encoder::stream_view_b);
    }
  }
};

constexpr std::uint64_t data_seed = 0;  // the evaluation noise and views: part of the data
constexpr std::uint32_t eval_epoch = 0xFFFFFFu;

study_data make_data(setting_kind kind, const encoder::image_dataset& train,
                     const encoder::image_dataset& eval, const std::string& eval_name,
                     const settings& s) {
  study_data d;
  d.kind = kind;
  d.s = &s;
  d.eval_name = eval_name;
  if (kind == setting_kind::two_tower) {
    d.key = "two_tower";
    d.tau = s.tau_two_tower;
    d.tr = encoder::split_modalities(train, data_seed, s.noise_b, 0);
    d.ev = encoder::split_modalities(eval, data_seed, s.noise_b, 1);
  } else {
    d.key = "two_view";
    d.tau = s.tau_two_view;
    d.tr_img = train;
    d.ev_img = eval;
    std::vector<index_t> all(static_cast<std::size_t>(eval.size()));
    for (index_t i = 0; i < eval.size(); ++i) all[static_cast<std::size_t>(i)] = i;
    d.ev_view_a = encoder::augment_batch(eval.images, all, eval.height, eval.width, s.aug,
                                         data_seed, eval_epoch, encoder::stream_view_a);
    d.ev_view_b = encoder::augment_batch(eval.images, all, eval.height, eval.width, s.aug,
                                         data_seed, eval_epoch, encoder::stream_view_b);
  }
  return d;
}

// ---- the model --------------------------------------------------------------------------------

/// backbone (MLP) -> projection head -> L2.
struct net {
  encoder::sequential<float> backbone, head;
  encoder::l2_norm<float> norm;
  net(const std::string& name, index_t in, const settings& s, std::uint64_t seed)
      : backbone(encoder::make_mlp_encoder<float>(name + ".backbone", in, s.hidden, seed,
                                                  encoder::activation::gelu, false)),
        head(encoder::make_projection_head<float>(name + ".head", s.hidden.back(), s.head_hidden,
                                                  s.embed, seed)) {}
  fmat forward(const fmat& x) { return norm.forward(head.forward(backbone.forward(x))); }
  void backward(const fmat& gz) { backbone.backward(head.backward(norm.backward(gz))); }
  fmat embed(const fmat& x) { return norm.forward(head.infer(backbone.infer(x))); }
};

/// Two towers, or one encoder shared by both views (its two inputs go through as one stack).
struct pair_model {
  bool shared;
  net a;
  std::unique_ptr<net> b;

  pair_model(const study_data& d, const settings& s, std::uint64_t seed)
      : shared(d.kind == setting_kind::two_view), a("A", d.in_a(), s, seed) {
    if (!shared) b = std::make_unique<net>("B", d.in_b(), s, seed + 1);
  }
  std::vector<encoder::parameter<float>*> parameters() {
    auto p = a.backbone.parameters();
    for (auto* q : a.head.parameters()) p.push_back(q);
    if (b) {
      for (auto* q : b->backbone.parameters()) p.push_back(q);
      for (auto* q : b->head.parameters()) p.push_back(q);
    }
    return p;
  }
  void forward(const fmat& xa, const fmat& xb, fmat& za, fmat& zb) {
    if (!shared) {
      za = a.forward(xa);
      zb = b->forward(xb);
      return;
    }
    fmat x(xa.rows() + xb.rows(), xa.cols());
    x << xa, xb;
    const fmat z = a.forward(x);
    za = z.topRows(xa.rows());
    zb = z.bottomRows(xb.rows());
  }
  void backward(const fmat& ga, const fmat& gb) {
    if (!shared) {
      a.backward(ga);
      b->backward(gb);
      return;
    }
    fmat g(ga.rows() + gb.rows(), ga.cols());
    g << ga, gb;
    a.backward(g);
  }
  void embed(const fmat& xa, const fmat& xb, fmat& za, fmat& zb) {
    za = a.embed(xa);
    zb = shared ? a.embed(xb) : b->embed(xb);
  }
};

gvec flat_grad(const std::vector<encoder::parameter<float>*>& params) {
  index_t n = 0;
  for (auto* p : params) n += p->grad.size();
  gvec g(n);
  index_t k = 0;
  for (auto* p : params) {
    g.segment(k, p->grad.size()) =
        Eigen::Map<const Eigen::VectorXf>(p->grad.data(), p->grad.size()).cast<double>();
    k += p->grad.size();
  }
  return g;
}

double cosine(const gvec& x, const gvec& y) {
  const double nx = x.norm(), ny = y.norm();
  return nx > 0 && ny > 0 ? x.dot(y) / (nx * ny) : std::nan("");
}

// ---- objectives -------------------------------------------------------------------------------

/// One method's loss with its state: writes dL/dza and dL/dzb, returns the batch CLIP loss.
class objective {
 public:
  objective(const method_def& m, double tau, index_t n_train, const settings& s, std::uint64_t seed)
      : m_(m) {
    clip_.temperature = tau;
    clip_.num_threads = 1;
    gamma_.temperature = tau;
    gamma_.alpha = m.alpha;
    gamma_.beta = s.gamma_beta;
    gamma_.seed = seed;
    gamma_.order = s.gamma_order == "sample" ? contrastive::gamma_update_order::sample_then_update
                                             : contrastive::gamma_update_order::update_then_sample;
    gamma_.num_threads = 1;
    if (m.oracle) gamma_.rate_source = contrastive::gamma_rate_source::exact;
    if (m.gamma && !m.oracle) state_ = std::make_unique<contrastive::normalizer_state>(n_train, 2);
  }

  /// The oracle's exact log-normalisers, per dataset id, for both directions.
  void set_exact(std::vector<double> row, std::vector<double> col) {
    exact_row_ = std::move(row);
    exact_col_ = std::move(col);
  }

  double step(const fmat& za, const fmat& zb, const std::vector<index_t>& ids, std::uint32_t step,
              fmat& ga, fmat& gb) {
    ga.resize(za.rows(), za.cols());
    gb.resize(zb.rows(), zb.cols());
    if (!m_.gamma) return contrastive::info_nce_forward_backward(za, zb, ga, gb, clip_);
    const auto saved = forward(za, zb, ids, step);
    contrastive::gamma_nce_backward(za, zb, saved, ga, gb, gamma_);
    return saved.info_nce;
  }

  /// Forward only: fills the rate state (the warm-up pass), nothing else.
  void observe(const fmat& za, const fmat& zb, const std::vector<index_t>& ids,
               std::uint32_t step) {
    if (state_) forward(za, zb, ids, step);
  }

 private:
  contrastive::gamma_nce_saved<float> forward(const fmat& za, const fmat& zb,
                                              const std::vector<index_t>& ids, std::uint32_t step) {
    const std::vector<std::int64_t> id64(ids.begin(), ids.end());
    contrastive::gamma_nce_options o = gamma_;
    o.step = step;
    if (!m_.oracle) return contrastive::gamma_nce_forward(za, zb, id64, *state_, o);
    std::vector<double> er(ids.size()), ec(ids.size());
    for (std::size_t i = 0; i < ids.size(); ++i) {
      er[i] = exact_row_[static_cast<std::size_t>(ids[i])];
      ec[i] = exact_col_[static_cast<std::size_t>(ids[i])];
    }
    o.exact_log_normalizer_a = er;
    o.exact_log_normalizer_b = ec;
    return contrastive::gamma_nce_forward(za, zb, id64, o);
  }

  method_def m_;
  contrastive::info_nce_options clip_;
  contrastive::gamma_nce_options gamma_;
  std::unique_ptr<contrastive::normalizer_state> state_;
  std::vector<double> exact_row_, exact_col_;
};

// ---- training ---------------------------------------------------------------------------------

/// Steps of the warm-up pass and of the measurement use Philox steps apart from training's.
constexpr std::uint32_t warm_step0 = 0x40000000u, measure_step0 = 0x80000000u;

/// Model, optimiser, schedule and objective of one run.
struct trainer {
  const study_data& d;
  const settings& s;
  method_def m;
  std::uint64_t seed;
  index_t batch;
  long steps_per_epoch, step = 0;
  pair_model model;
  encoder::adamw<float> opt;
  encoder::cosine_schedule sched;
  objective obj;

  trainer(const study_data& d_, const settings& s_, const method_def& m_, std::uint64_t seed_)
      : d(d_),
        s(s_),
        m(m_),
        seed(seed_),
        batch(std::min(m_.batch, d_.n_train())),
        steps_per_epoch(d_.n_train() / batch),
        model(d_, s_, seed_),
        opt(model.parameters(), encoder::adamw_options{0.9, 0.999, 1e-8, s_.weight_decay}),
        sched{s_.lr,
              static_cast<long>(s_.warmup * static_cast<double>(steps_per_epoch * s_.epochs)),
              steps_per_epoch * s_.epochs, 0},
        obj(m_, d_.tau, d_.n_train(), s_, seed_) {}

  /// --gamma-init pass: one forward-only pass over the training set at the initial weights fills
  /// every id's rate before its first training visit.
  void warm_state(std::uint32_t epoch, std::uint32_t step0) {
    if (!m.gamma) return;
    const auto perm = encoder::permutation(d.n_train(), seed ^ 0x5a5a5a5aull, epoch);
    fmat xa, xb, za, zb;
    for (long k = 0; k < steps_per_epoch; ++k) {
      const std::vector<index_t> ids(perm.begin() + k * batch, perm.begin() + (k + 1) * batch);
      d.views(ids, seed, epoch, xa, xb);
      model.embed(xa, xb, za, zb);
      obj.observe(za, zb, ids, step0 + static_cast<std::uint32_t>(k));
    }
  }

  /// One epoch of training; returns the last batch's CLIP loss.
  double run_epoch(int epoch) {
    const auto ep = static_cast<std::uint32_t>(epoch);
    const auto perm = encoder::permutation(d.n_train(), seed, ep);
    fmat xa, xb, za, zb, ga, gb;
    double clip = 0;
    for (long k = 0; k < steps_per_epoch; ++k) {
      const std::vector<index_t> ids(perm.begin() + k * batch, perm.begin() + (k + 1) * batch);
      d.views(ids, seed, ep, xa, xb);
      opt.zero_grad();
      model.forward(xa, xb, za, zb);
      clip = obj.step(za, zb, ids, static_cast<std::uint32_t>(step), ga, gb);
      model.backward(ga, gb);
      opt.step(sched(step));
      ++step;
    }
    return clip;
  }

  /// Evaluation-set CLIP loss and A->B top-1 over chunks of 256 pairs.
  void evaluate(double& clip, double& top1) {
    fmat za, zb;
    if (d.kind == setting_kind::two_tower)
      model.embed(d.ev.a, d.ev.b_eval, za, zb);
    else
      model.embed(d.ev_view_a, d.ev_view_b, za, zb);
    encoder::alignment_metrics(za, zb, d.tau, std::min<index_t>(256, za.rows()), clip, top1);
  }
};

double probe_accuracy(const fmat& tr, const fmat& ev, const study_data& d, const settings& s,
                      std::uint64_t seed) {
  encoder::probe_options po;
  po.epochs = s.probe_epochs;
  po.lr = s.probe_lr;
  po.seed = seed;
  po.progress = false;
  return encoder::linear_probe(tr, d.train_labels(), ev, d.eval_labels(), po).test_accuracy;
}

/// Probe accuracies: `main` on the A+B embeddings (two towers) or the backbone features (two
/// views); a and b on each tower's embeddings alone (two towers only, NaN otherwise).
struct probes {
  double a = std::nan(""), b = std::nan(""), main = 0;
};

probes tower_probes(const fmat& a_tr, const fmat& b_tr, const fmat& a_ev, const fmat& b_ev,
                    const study_data& d, const settings& s, std::uint64_t seed) {
  probes p;
  p.main = probe_accuracy(encoder::concat(a_tr, b_tr), encoder::concat(a_ev, b_ev), d, s, seed);
  p.a = probe_accuracy(a_tr, a_ev, d, s, seed + 1);
  p.b = probe_accuracy(b_tr, b_ev, d, s, seed + 2);
  return p;
}

probes model_probes(pair_model& m, const study_data& d, const settings& s, std::uint64_t seed) {
  if (d.kind == setting_kind::two_tower) {
    fmat a_tr, b_tr, a_ev, b_ev;
    m.embed(d.tr.a, d.tr.b_eval, a_tr, b_tr);
    m.embed(d.ev.a, d.ev.b_eval, a_ev, b_ev);
    return tower_probes(a_tr, b_tr, a_ev, b_ev, d, s, seed);
  }
  probes p;
  p.main = probe_accuracy(m.a.backbone.infer(d.tr_img.images), m.a.backbone.infer(d.ev_img.images),
                          d, s, seed);
  return p;
}

probes raw_probes(const study_data& d, const settings& s) {
  if (d.kind == setting_kind::two_tower)
    return tower_probes(d.tr.a, d.tr.b_eval, d.ev.a, d.ev.b_eval, d, s, 7);
  probes p;
  p.main = probe_accuracy(d.tr_img.images, d.ev_img.images, d, s, 7);
  return p;
}

// ---- results ----------------------------------------------------------------------------------

struct run_result {
  std::string setting, method;
  std::uint64_t seed = 0;
  index_t batch = 0;
  long steps = 0;
  double seconds = 0, eval_clip = 0, top1 = 0;
  probes probe;
  std::vector<double> clip_curve, top1_curve;  // after epoch 0 (initial), 1, ..., epochs
};

struct bias_result {
  std::string setting, method;
  std::uint64_t seed = 0;
  index_t batch = 0;
  long batches = 0;
  double cos_batch = 0;  // mean over batches of cos(mini-batch gradient, full gradient)
  double cos_mean = 0;   // cos(mean of the mini-batch gradients, full gradient)
};

/// A progress bar over all runs (unit: epochs of data) and a line per finished job.
class study_progress {
 public:
  study_progress(long total, bool on)
      : on_(on), tty_(::isatty(::fileno(stderr)) != 0), bar_("gamma_study", total, 1, "epochs") {}
  void advance(long units, double loss) {
    std::lock_guard<std::mutex> lock(mu_);
    done_ += units;
    if (on_) bar_.update(done_, 1, loss, done_);
  }
  void line(const std::string& text) {
    std::lock_guard<std::mutex> lock(mu_);
    std::fprintf(stderr, "%s%s\n", tty_ && on_ ? "\r\033[K" : "", text.c_str());
    std::fflush(stderr);
  }

 private:
  std::mutex mu_;
  bool on_, tty_;
  encoder::progress_bar bar_;
  long done_ = 0;
};

run_result train_run(const study_data& d, const settings& s, const method_def& m,
                     std::uint64_t seed, study_progress& progress) {
  encoder::stopwatch clock;
  trainer t(d, s, m, seed);
  if (s.gamma_init == "pass") t.warm_state(0, warm_step0);
  run_result r;
  r.setting = d.key;
  r.method = m.key;
  r.seed = seed;
  r.batch = t.batch;
  double clip = 0, top1 = 0;
  t.evaluate(clip, top1);
  r.clip_curve.push_back(clip);
  r.top1_curve.push_back(top1);
  for (int e = 0; e < s.epochs; ++e) {
    t.run_epoch(e);
    t.evaluate(clip, top1);
    r.clip_curve.push_back(clip);
    r.top1_curve.push_back(top1);
    progress.advance(1, clip);
  }
  r.steps = t.step;
  r.eval_clip = clip;
  r.top1 = top1;
  r.probe = model_probes(t.model, d, s, seed + 100);
  r.seconds = clock.seconds();
  return r;
}

/// Units of progress of one bias job: the checkpoint's epochs, the full gradient (about two
/// epochs of work) and, per method, a warm-up and a measurement epoch.
long bias_units(const settings& s, std::size_t methods) {
  return s.bias_epoch + 2 + 2 * static_cast<long>(methods + 1);
}

/// The gradient bias at the checkpoint of CLIP at batch 256 after --bias-epoch epochs: the
/// full-dataset gradient of the global loss (every training pair, the views of the next epoch;
/// the gamma loss with r_i = 1 at N = the dataset, i.e. -s_ii + log mean_{j != i} exp s_ij in
/// both directions), then each method's mini-batch gradients over one epoch of batches of the
/// same views, its rate state warmed by --bias-warm-passes forward-only passes at the checkpoint.
std::vector<bias_result> measure_bias(const study_data& d, const settings& s,
                                      const std::vector<method_def>& methods, std::uint64_t seed,
                                      study_progress& progress) {
  trainer t(d, s, make_methods(s).front(), seed);
  for (int e = 0; e < s.bias_epoch; ++e) {
    progress.advance(1, t.run_epoch(e));
  }
  pair_model& model = t.model;
  const auto params = model.parameters();
  const index_t n = d.n_train();
  const auto ep = static_cast<std::uint32_t>(s.bias_epoch);
  std::vector<index_t> all(static_cast<std::size_t>(n));
  for (index_t i = 0; i < n; ++i) all[static_cast<std::size_t>(i)] = i;
  fmat xa, xb, za, zb;
  d.views(all, seed, ep, xa, xb);
  model.embed(xa, xb, za, zb);

  contrastive::gamma_nce_options go;
  go.temperature = d.tau;
  go.alpha = deterministic;
  go.rate_source = contrastive::gamma_rate_source::same_batch;
  go.num_threads = 1;
  const std::vector<std::int64_t> all64(all.begin(), all.end());
  const auto full = contrastive::gamma_nce_forward(za, zb, all64, go);
  fmat gza(n, za.cols()), gzb(n, zb.cols());
  contrastive::gamma_nce_backward(za, zb, full, gza, gzb, go);
  encoder::zero_grad(params);
  const index_t chunk = 4096;
  fmat ca, cb;
  for (index_t r = 0; r < n; r += chunk) {
    const index_t c = std::min(chunk, n - r);
    model.forward(xa.middleRows(r, c), xb.middleRows(r, c), ca, cb);
    model.backward(gza.middleRows(r, c), gzb.middleRows(r, c));
  }
  const gvec g_full = flat_grad(params);
  progress.advance(2, full.rate_loss);

  std::vector<method_def> with_oracle = methods;
  with_oracle.push_back(oracle_method());
  std::vector<bias_result> out;
  for (const method_def& m : with_oracle) {
    objective obj(m, d.tau, n, s, seed);
    if (m.oracle) obj.set_exact(full.row.log_zhat, full.col.log_zhat);
    const index_t batch = std::min(m.batch, n);
    const long steps = n / batch;
    const long count = s.bias_batches > 0 ? std::min<long>(steps, s.bias_batches) : steps;
    fmat ba, bb, ga, gb;
    for (int pass = 0; m.gamma && !m.oracle && pass < s.bias_warm_passes; ++pass) {
      // Warm the rates at the checkpoint, batches in other orders than the measurement's.
      const auto warm =
          encoder::permutation(n, seed ^ 0x5a5a5a5aull, ep + 1 + static_cast<std::uint32_t>(pass));
      for (long k = 0; k < steps; ++k) {
        const std::vector<index_t> ids(warm.begin() + k * batch, warm.begin() + (k + 1) * batch);
        obj.observe(encoder::gather_rows(za, ids), encoder::gather_rows(zb, ids), ids,
                    warm_step0 + static_cast<std::uint32_t>(pass * steps + k));
      }
    }
    progress.advance(1, 0);
    const auto perm = encoder::permutation(n, seed, ep);
    bias_result b;
    b.setting = d.key;
    b.method = m.key;
    b.seed = seed;
    b.batch = batch;
    b.batches = count;
    gvec sum = gvec::Zero(g_full.size());
    double cos_sum = 0;
    for (long k = 0; k < count; ++k) {
      const std::vector<index_t> ids(perm.begin() + k * batch, perm.begin() + (k + 1) * batch);
      model.forward(encoder::gather_rows(xa, ids), encoder::gather_rows(xb, ids), ba, bb);
      obj.step(ba, bb, ids, measure_step0 + static_cast<std::uint32_t>(k), ga, gb);
      encoder::zero_grad(params);
      model.backward(ga, gb);
      const gvec g = flat_grad(params);
      cos_sum += cosine(g, g_full);
      sum += g;
    }
    b.cos_batch = cos_sum / static_cast<double>(count);
    b.cos_mean = cosine(sum, g_full);
    out.push_back(b);
    progress.advance(1, 0);
  }
  return out;
}

// ---- statistics and files ---------------------------------------------------------------------

struct stats {
  double mean = 0, sd = 0;
  std::size_t n = 0;
};

stats summarize(const std::vector<double>& v) {
  stats st;
  st.n = v.size();
  if (v.empty()) return st;
  for (double x : v) st.mean += x;
  st.mean /= static_cast<double>(v.size());
  if (v.size() > 1) {
    double ss = 0;
    for (double x : v) ss += (x - st.mean) * (x - st.mean);
    st.sd = std::sqrt(ss / static_cast<double>(v.size() - 1));
  }
  return st;
}

std::string pm(const stats& st, double scale, int digits, const char* unit = "") {
  if (st.n == 0) return "-";
  std::string out = encoder::fixed(scale * st.mean, digits) + unit;
  if (st.n > 1) out += " +- " + encoder::fixed(scale * st.sd, digits);
  return out;
}

/// Writes `text` to `path` with the library's atomic write of its state files (temporary file,
/// fsync, rename): a reader (or a crash) sees the old file or the new one, never half of one.
void write_atomic(const std::string& path, const std::string& text) {
  contrastive::detail::state_write_atomically("gamma_study", path,
                                              std::vector<unsigned char>(text.begin(), text.end()));
}

std::string runs_csv(const std::vector<run_result>& runs) {
  std::ostringstream os;
  os.precision(8);
  os << "setting,method,seed,batch,steps,seconds,eval_clip_loss,eval_top1,probe,probe_a,probe_b\n";
  for (const auto& r : runs)
    os << r.setting << ',' << r.method << ',' << r.seed << ',' << r.batch << ',' << r.steps << ','
       << r.seconds << ',' << r.eval_clip << ',' << r.top1 << ',' << r.probe.main << ','
       << r.probe.a << ',' << r.probe.b << '\n';
  return os.str();
}

std::string curves_csv(const std::vector<run_result>& runs) {
  std::ostringstream os;
  os.precision(8);
  os << "setting,method,seed,epoch,eval_clip_loss,eval_top1\n";
  for (const auto& r : runs)
    for (std::size_t e = 0; e < r.clip_curve.size(); ++e)
      os << r.setting << ',' << r.method << ',' << r.seed << ',' << e << ',' << r.clip_curve[e]
         << ',' << r.top1_curve[e] << '\n';
  return os.str();
}

std::string bias_csv(const std::vector<bias_result>& bias) {
  std::ostringstream os;
  os.precision(8);
  os << "setting,method,seed,batch,batches,cos_batch_mean,cos_of_mean\n";
  for (const auto& b : bias)
    os << b.setting << ',' << b.method << ',' << b.seed << ',' << b.batch << ',' << b.batches << ','
       << b.cos_batch << ',' << b.cos_mean << '\n';
  return os.str();
}

void apply_presets(settings& s, const CLI::App& app) {
  auto unset = [&](const char* opt) { return app.count(opt) == 0; };
  if (s.smoke) {  // the ctest smoke test: a few hundred images, tiny towers, one seed
    if (unset("--train-size")) s.train_size = 1024;
    if (unset("--test-size")) s.test_size = 512;
    if (unset("--validation-size")) s.validation_size = 256;
    if (unset("--epochs")) s.epochs = 2;
    if (unset("--seeds")) s.seeds = {1};
    if (unset("--hidden")) s.hidden = {32};
    if (unset("--head-hidden")) s.head_hidden = 32;
    if (unset("--embed")) s.embed = 16;
    if (unset("--probe-epochs")) s.probe_epochs = 2;
    if (unset("--bias-batches")) s.bias_batches = 8;
    s.check = true;
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  settings s;
  std::string methods_help = "comma-separated method keys, or all:";
  for (const auto& m : make_methods(s))
    methods_help += "\n  " + m.key + ": " + m.name + " at batch " + std::to_string(m.batch);
  CLI::App app{
      "A seeded study of the gamma-auxiliary loss against CLIP on Fashion-MNIST, at equal "
      "epochs.\n"
      "Settings: two_tower (train_two_tower's towers: A = top half, B = noisy bottom half) and "
      "two_view\n"
      "(two augmented views of each image through one shared encoder, symmetric InfoNCE between "
      "them).\n"
      "Per setting, method and seed it reports the evaluation CLIP loss and A->B top-1 (chunks "
      "of 256)\n"
      "and linear probes (two_tower: the A, B and A+B embeddings; two_view: the backbone "
      "features); per "
      "setting\n"
      "and seed, the gradient bias: cosines between each method's mini-batch gradients and the "
      "full-\n"
      "dataset gradient of the global loss at a checkpoint of CLIP at batch 256. Runs go in "
      "parallel\n"
      "(--jobs), one thread each. Data: Debian package dataset-fashion-mnist."};
  app.option_defaults()->always_capture_default();
  app.add_option(
      "--data-dir", s.data_dir,
      std::string("directory of the IDX .gz files (default: $CONTRASTIVE_FASHION_MNIST_DIR or ") +
          encoder::fashion_mnist_default_dir + ")");
  app.add_option("--out-dir", s.out_dir,
                 "where the CSV files and the SVG go (default: <executable dir>/runs)");
  app.add_option("--settings", s.settings_list, "comma-separated: two_tower, two_view");
  app.add_option("--methods", s.methods, methods_help);
  app.add_option("--seeds", s.seeds, "seeds (init, shuffling, noise, augmentations, gamma draws)")
      ->delimiter(',');
  app.add_flag("--validation", s.validation,
               "hold out the last --validation-size training images and evaluate on them (for "
               "choosing settings; the test set is not read)");
  app.add_option("--validation-size", s.validation_size, "held-out training images")
      ->check(CLI::PositiveNumber);
  app.add_flag("--smoke", s.smoke,
               "test setting: 1024 images, tiny towers, one seed; implies --check");
  app.add_flag("--check", s.check,
               "exit with 2 unless every number is finite and every method's evaluation CLIP "
               "loss fell below its value at initialisation");
  app.add_flag("--no-progress", s.no_progress, "no progress bar");
  app.add_flag("--no-bias", s.no_bias, "skip the gradient-bias measurement");
  app.add_option("--jobs", s.jobs, "runs at a time, one thread each (0 = all cores)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--train-size", s.train_size, "training images (0 = all 60000)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--test-size", s.test_size, "test images (0 = all 10000)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--epochs", s.epochs, "training epochs of every run")->check(CLI::PositiveNumber);
  app.add_option("--lr", s.lr, "peak AdamW learning rate")->check(CLI::NonNegativeNumber);
  app.add_option("--weight-decay", s.weight_decay, "AdamW decoupled weight decay")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--warmup", s.warmup, "warm-up, fraction of the steps")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--tau-two-tower", s.tau_two_tower, "temperature of the two_tower setting")
      ->check(CLI::PositiveNumber);
  app.add_option("--tau-two-view", s.tau_two_view, "temperature of the two_view setting")
      ->check(CLI::PositiveNumber);
  app.add_option("--noise-b", s.noise_b, "two_tower: std of the noise on modality B")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--hidden", s.hidden, "backbone widths")->delimiter(',');
  app.add_option("--head-hidden", s.head_hidden, "projection head hidden width")
      ->check(CLI::PositiveNumber);
  app.add_option("--embed", s.embed, "embedding width")->check(CLI::PositiveNumber);
  app.add_option("--gamma-beta", s.gamma_beta,
                 "gamma loss: weight of the new estimate in the rate EMA")
      ->check(CLI::Range(1e-9, 1.0));
  app.add_option("--gamma-order", s.gamma_order,
                 "gamma loss: update the rate state then sample (update), or sample then update")
      ->check(CLI::IsMember({"update", "sample"}));
  app.add_option("--gamma-init", s.gamma_init,
                 "gamma loss: rate of a never-seen id: its first batch estimate (first), or one "
                 "forward-only pass over the training set before training (pass)")
      ->check(CLI::IsMember({"first", "pass"}));
  app.add_option("--half-alpha", s.half_alpha, "alpha of the gamma loss at batch 64")
      ->check(CLI::PositiveNumber);
  app.add_option("--bias-epoch", s.bias_epoch,
                 "the bias checkpoint: CLIP at batch 256 after this many epochs")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--bias-warm-passes", s.bias_warm_passes,
                 "forward-only passes over the training set that fill the gamma rate state at the "
                 "bias checkpoint")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--bias-batches", s.bias_batches,
                 "mini-batches per method in the bias measurement (0 = one whole epoch)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--probe-epochs", s.probe_epochs, "linear probe epochs")
      ->check(CLI::PositiveNumber);
  app.add_option("--probe-lr", s.probe_lr, "linear probe peak learning rate")
      ->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);
  apply_presets(s, app);
  encoder::set_threads(1);  // one thread per run; runs go in parallel
  if (s.hidden.empty() || s.seeds.empty()) {
    std::cerr << "gamma_study: --hidden and --seeds need at least one value\n";
    return 1;
  }
  if (s.out_dir.empty()) s.out_dir = encoder::default_out_dir(argv[0]);
  s.out_dir = encoder::absolute_path(s.out_dir);

  std::vector<setting_kind> kinds;
  {
    std::stringstream list(s.settings_list);
    std::string k;
    while (std::getline(list, k, ',')) {
      if (k == "two_tower")
        kinds.push_back(setting_kind::two_tower);
      else if (k == "two_view")
        kinds.push_back(setting_kind::two_view);
      else {
        std::cerr << "gamma_study: unknown setting '" << k << "' (two_tower, two_view)\n";
        return 1;
      }
    }
  }
  std::vector<method_def> methods;
  if (s.methods == "all") {
    methods = make_methods(s);
  } else {
    std::stringstream list(s.methods);
    std::string k, keys;
    while (std::getline(list, k, ',')) {
      bool found = false;
      for (const auto& m : make_methods(s)) {
        keys += (keys.empty() ? "" : ", ") + m.key;
        if (m.key == k && !found) {
          found = true;
          if (std::none_of(methods.begin(), methods.end(),
                           [&](const method_def& x) { return x.key == k; }))
            methods.push_back(m);  // a repeated key runs once
        }
      }
      if (!found) {
        std::cerr << "gamma_study: unknown method '" << k << "' (all, " << keys << ")\n";
        return 1;
      }
      keys.clear();
    }
  }
  if (methods.empty() || kinds.empty()) {
    std::cerr << "gamma_study: no method or setting selected (see --help)\n";
    return 1;
  }

  try {
    encoder::stopwatch total;
    const std::string dir = encoder::fashion_mnist_dir(s.data_dir);
    encoder::image_dataset train_img, eval_img;
    std::string eval_name = "test";
    try {
      train_img = encoder::load_fashion_mnist(dir, encoder::split::train, s.train_size);
      if (s.validation) {
        const index_t v = s.validation_size, n = train_img.size();
        if (v >= n)
          throw encoder::error("--validation-size " + std::to_string(v) +
                               " leaves no training images out of " + std::to_string(n));
        eval_img = train_img;
        eval_img.images = train_img.images.bottomRows(v);
        eval_img.labels.assign(train_img.labels.end() - v, train_img.labels.end());
        train_img.images.conservativeResize(n - v, Eigen::NoChange);
        train_img.labels.resize(static_cast<std::size_t>(n - v));
        eval_name = "validation";
      } else {
        eval_img = encoder::load_fashion_mnist(dir, encoder::split::test, s.test_size);
      }
    } catch (const encoder::data_error& e) {
      std::cerr << "gamma_study: " << e.what() << "\n";
      if (e.missing)
        std::cerr << "gamma_study: skipped (exit code " << encoder::exit_skipped << ")\n";
      return e.missing ? encoder::exit_skipped : 1;
    }
    std::filesystem::create_directories(s.out_dir);
    std::vector<study_data> data;
    for (auto k : kinds) data.push_back(make_data(k, train_img, eval_img, eval_name, s));

    const int jobs =
        s.jobs > 0 ? s.jobs : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
    std::printf(
        "gamma study on Fashion-MNIST: %ld training / %ld %s images from %s\n"
        "%zu setting(s) x %zu method(s) x %zu seed(s), %d epochs; gamma beta %g, order %s, "
        "init %s; %d run(s) at a time\n",
        static_cast<long>(train_img.size()), static_cast<long>(eval_img.size()), eval_name.c_str(),
        dir.c_str(), data.size(), methods.size(), s.seeds.size(), s.epochs, s.gamma_beta,
        s.gamma_order.c_str(), s.gamma_init.c_str(), jobs);

    // Jobs: the bias measurements and the small batches (the longest) first.
    struct job {
      const study_data* d;
      const method_def* m;  // nullptr: the bias measurement, or the raw probe (seed 0)
      std::uint64_t seed;
      long units;
    };
    std::vector<job> todo;
    long total_units = 0;
    for (const auto& d : data) {
      todo.push_back({&d, nullptr, 0, 0});
      if (!s.no_bias)
        for (auto seed : s.seeds)
          todo.push_back({&d, nullptr, seed, bias_units(s, methods.size())});
      for (const auto& m : methods)
        for (auto seed : s.seeds) todo.push_back({&d, &m, seed, s.epochs});
    }
    std::stable_sort(todo.begin(), todo.end(), [](const job& x, const job& y) {
      const index_t bx = x.m ? x.m->batch : 0, by = y.m ? y.m->batch : 0;
      return bx < by;
    });
    for (const auto& j : todo) total_units += j.units;

    study_progress progress(total_units, !s.no_progress);
    std::mutex mu;
    std::vector<run_result> runs;
    std::vector<bias_result> bias;
    std::map<std::string, probes> raw;
    std::atomic<std::size_t> next{0};
    std::size_t finished = 0;
    std::string failure;
    const std::string runs_path = s.out_dir + "/gamma_study_runs.csv",
                      bias_path = s.out_dir + "/gamma_study_bias.csv",
                      curves_path = s.out_dir + "/gamma_study_curves.csv",
                      svg_path = s.out_dir + "/gamma_study.svg";
    auto worker = [&]() {
      encoder::set_threads(1);  // OpenMP's thread count is per thread: one each
      for (;;) {
        const std::size_t k = next++;
        if (k >= todo.size()) return;
        const job& j = todo[k];
        try {
          encoder::stopwatch clock;
          std::string text;
          if (j.m) {
            run_result r = train_run(*j.d, s, *j.m, j.seed, progress);
            char buf[256];
            std::snprintf(buf, sizeof buf,
                          "%s %s seed %llu: %ld steps, %s CLIP loss %.3f, top-1 %.1f%%, probe "
                          "%.2f%%",
                          r.setting.c_str(), r.method.c_str(),
                          static_cast<unsigned long long>(r.seed), r.steps, j.d->eval_name.c_str(),
                          r.eval_clip, 100 * r.top1, 100 * r.probe.main);
            text = buf;
            std::lock_guard<std::mutex> lock(mu);
            runs.push_back(std::move(r));
            write_atomic(runs_path, runs_csv(runs));
            write_atomic(curves_path, curves_csv(runs));
          } else if (j.seed == 0) {
            const probes p = raw_probes(*j.d, s);
            text = j.d->key + " raw-pixel probe: " + encoder::percent(p.main);
            std::lock_guard<std::mutex> lock(mu);
            raw[j.d->key] = p;
          } else {
            auto b = measure_bias(*j.d, s, methods, j.seed, progress);
            text = j.d->key + " gradient bias, seed " + std::to_string(j.seed) + ":";
            for (const auto& x : b) text += " " + x.method + " " + encoder::fixed(x.cos_mean, 3);
            std::lock_guard<std::mutex> lock(mu);
            for (auto& x : b) bias.push_back(std::move(x));
            write_atomic(bias_path, bias_csv(bias));
          }
          std::size_t done;
          {
            std::lock_guard<std::mutex> lock(mu);
            done = ++finished;
          }
          progress.line("[" + std::to_string(done) + "/" + std::to_string(todo.size()) + "] " +
                        text + " (" + encoder::fixed(clock.seconds(), 1) + " s)");
        } catch (const std::exception& e) {
          std::lock_guard<std::mutex> lock(mu);
          if (failure.empty()) failure = e.what();
          next = todo.size();  // stop handing out jobs
          return;
        }
      }
    };
    std::vector<std::thread> pool;
    for (int t = 0; t < jobs; ++t) pool.emplace_back(worker);
    for (auto& t : pool) t.join();
    if (!failure.empty()) throw encoder::error(failure);

    // Tables (one per setting) and the plot.
    auto key_of = [](const std::string& setting, const std::string& method) {
      return setting + "/" + method;
    };
    std::map<std::string, std::vector<const run_result*>> by;
    for (const auto& r : runs) by[key_of(r.setting, r.method)].push_back(&r);
    std::map<std::string, std::vector<const bias_result*>> bias_by;
    for (const auto& b : bias) bias_by[key_of(b.setting, b.method)].push_back(&b);

    std::vector<encoder::curve> curves;
    std::string all_tables;
    encoder::text_table combined;  // every setting's rows, under the SVG's curves
    combined.header = {"setting",
                       "method",
                       "batch",
                       "steps",
                       eval_name + " CLIP loss",
                       "A->B top-1",
                       "probe A",
                       "probe B",
                       "probe (A+B or backbone)",
                       "cos(batch g, full g)",
                       "cos(epoch-mean g, full g)"};
    // Rows hold every column; a setting without tower probes drops probe A and B (5 and 6).
    auto add_row = [&](encoder::text_table& table, const study_data& d,
                       const std::vector<std::string>& row) {
      std::vector<std::string> own = row;
      if (d.kind != setting_kind::two_tower) own.erase(own.begin() + 5, own.begin() + 7);
      table.add(own);
      std::vector<std::string> c{d.key};
      c.insert(c.end(), row.begin(), row.end());
      combined.add(c);
    };
    bool ok = true;
    std::vector<std::string> summary;
    for (const auto& d : data) {
      encoder::text_table table;
      const bool towers = d.kind == setting_kind::two_tower;
      table.header = {"method", "batch", "steps", d.eval_name + " CLIP loss", "A->B top-1"};
      if (towers) table.header.insert(table.header.end(), {"probe A", "probe B"});
      table.header.insert(table.header.end(),
                          {towers ? "probe A+B" : "probe (backbone)", "cos(batch g, full g)",
                           "cos(epoch-mean g, full g)"});
      auto pct = [](double v) { return std::isfinite(v) ? encoder::percent(v) : std::string("-"); };
      const probes& rp = raw[d.key];
      add_row(table, d,
              {"raw pixels", "-", "-", "-", "-", pct(rp.a), pct(rp.b), pct(rp.main), "-", "-"});
      auto bias_cells = [&](const std::string& key, std::vector<std::string>& row) {
        std::vector<double> cb, cm;
        for (const auto* b : bias_by[key_of(d.key, key)]) {
          cb.push_back(b->cos_batch);
          cm.push_back(b->cos_mean);
          ok = ok && std::isfinite(b->cos_batch) && std::isfinite(b->cos_mean);
        }
        row.push_back(pm(summarize(cb), 1, 3));
        row.push_back(pm(summarize(cm), 1, 3));
      };
      std::map<std::string, stats> top1_of;
      for (const auto& m : methods) {
        const auto& rs = by[key_of(d.key, m.key)];
        if (rs.empty()) continue;
        std::vector<double> clip, top1, probe, probe_a, probe_b;
        // Two panels per setting, from epoch 1 (the initial values would flatten the scale).
        for (int panel = 0; panel < 2; ++panel) {
          encoder::curve c;
          c.run = m.name + ", batch " + std::to_string(m.batch);
          c.phase = d.key + (panel == 0 ? ": " + d.eval_name + " CLIP loss" : ": A->B top-1") +
                    " after each epoch, mean over seeds";
          c.y_label = panel == 0 ? "CLIP loss (chunks of 256)" : "top-1 (%)";
          c.steps_per_epoch = 1;
          c.smoothing = 0;
          for (std::size_t e = 1; e < rs.front()->clip_curve.size(); ++e) {
            double v = 0;
            for (const auto* r : rs) v += panel == 0 ? r->clip_curve[e] : 100 * r->top1_curve[e];
            c.push(static_cast<double>(e), static_cast<int>(e), v / static_cast<double>(rs.size()),
                   0);
          }
          curves.push_back(c);
        }
        for (const auto* r : rs) {
          clip.push_back(r->eval_clip);
          top1.push_back(r->top1);
          probe.push_back(r->probe.main);
          if (towers) {
            probe_a.push_back(r->probe.a);
            probe_b.push_back(r->probe.b);
          }
          ok = ok && std::isfinite(r->eval_clip) && std::isfinite(r->top1) &&
               std::isfinite(r->probe.main) && r->eval_clip < r->clip_curve.front() &&
               (!towers || (std::isfinite(r->probe.a) && std::isfinite(r->probe.b)));
        }
        top1_of[m.key] = summarize(top1);
        std::vector<std::string> row{m.name,
                                     std::to_string(rs.front()->batch),
                                     std::to_string(rs.front()->steps),
                                     pm(summarize(clip), 1, 3),
                                     pm(summarize(top1), 100, 1, "%"),
                                     pm(summarize(probe_a), 100, 2, "%"),
                                     pm(summarize(probe_b), 100, 2, "%"),
                                     pm(summarize(probe), 100, 2, "%")};
        bias_cells(m.key, row);
        add_row(table, d, row);
      }
      if (!bias.empty()) {
        const auto o = oracle_method();
        std::vector<std::string> row{o.name, std::to_string(o.batch), "-", "-", "-", "-", "-", "-"};
        bias_cells(o.key, row);
        add_row(table, d, row);
      }
      all_tables += "\n" + d.key + " (" + std::to_string(d.n_train()) + " training pairs, " +
                    std::to_string(s.epochs) + " epochs, " + std::to_string(s.seeds.size()) +
                    " seed(s), mean +- sd; temperature " + encoder::detail::num(d.tau) + "):\n" +
                    table.str();
      if (top1_of.count("clip-32") && top1_of.count("gamma-32-a1")) {
        std::string best = "clip-32";
        for (const char* k : {"gamma-32-a1", "gamma-32-a16", "sogclr-32"})
          if (top1_of.count(k) && top1_of[k].mean > top1_of[best].mean) best = k;
        summary.push_back(d.key + ": best top-1 at batch 32 " + best + " " +
                          encoder::percent(top1_of[best].mean, 1) + " (clip-32 " +
                          encoder::percent(top1_of["clip-32"].mean, 1) + ")");
      }
      if (top1_of.count("clip-128") && top1_of.count("gamma-64"))
        summary.push_back(d.key + ": gamma-64 " + encoder::percent(top1_of["gamma-64"].mean, 1) +
                          " vs clip-128 " + encoder::percent(top1_of["clip-128"].mean, 1));
    }
    write_atomic(runs_path, runs_csv(runs));
    write_atomic(curves_path, curves_csv(runs));
    if (!bias.empty()) write_atomic(bias_path, bias_csv(bias));
    encoder::write_curves_svg(svg_path,
                              "gamma loss vs CLIP on Fashion-MNIST, " + eval_name + " set (" +
                                  std::to_string(s.seeds.size()) + " seeds)",
                              curves, &combined);
    std::printf("%s", all_tables.c_str());
    std::printf("runs:   %s\ncurves: %s\n", runs_path.c_str(), curves_path.c_str());
    if (!bias.empty()) std::printf("bias:   %s\n", bias_path.c_str());
    std::printf("plot:   %s\n", svg_path.c_str());
    std::string line = "summary: " + std::to_string(runs.size()) + " runs in " +
                       encoder::format_duration(total.seconds());
    for (const auto& x : summary) line += "; " + x;
    std::printf("%s\n", line.c_str());
    if (s.check) {
      std::printf(
          "check: every number finite and every evaluation CLIP loss below its initial "
          "value: %s\n",
          ok ? "yes" : "NO");
      if (!ok) return encoder::exit_check_failed;
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "gamma_study: error: " << e.what() << "\n";
    return 1;
  }
}
