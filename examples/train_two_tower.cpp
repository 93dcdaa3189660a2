// Two towers on Fashion-MNIST with an information gap between the modalities, trained with the
// symmetric CLIP loss and with the CVPR 2023 modality-structure regularisers, and the gamma loss
// at a small batch; every method is probed the same way and reported in one table. This is the
// library's own test of the claim (Jiang et al., CVPR 2023, Thm 3.1) that exact alignment loses
// modality-specific information. `train_two_tower --help` explains the setting.
//
// A method is one entry of the table built by make_methods(): a name, the views it needs and a
// loss that reads the embeddings and adds its gradients.

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <functional>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <contrastive/contrastive.hpp>

#include "encoder/encoder.hpp"
#include "encoder/two_tower.hpp"

namespace {

using encoder::index_t;
using fmat = encoder::matrix<float>;
using views = encoder::tower_views<float>;
using encoder::add_brownian_bridge;
using encoder::add_feature_separation;
using encoder::add_gamma_nce;
using encoder::add_geometric_consistency;
using encoder::add_info_nce;
using encoder::add_l_con;
using encoder::alignment_metrics;  // the two modalities and the metrics: encoder/two_tower.hpp
using encoder::clip_value;
using encoder::concat;
using encoder::half_h;
using encoder::half_w;
using encoder::modalities;

const char* const setting_text =
    "The two modalities come from one Fashion-MNIST image, cut at row 14:\n"
    "  A (\"top view\"):    the top 14 rows (14x28 pixels), clean;\n"
    "  B (\"bottom view\"): the bottom 14 rows plus Gaussian noise (std --noise-b, redrawn every "
    "epoch in\n"
    "                     training, fixed per image for evaluation).\n"
    "Each modality holds class evidence the other lacks (collars and sleeves are on top, soles and "
    "hems at\n"
    "the bottom) and B is noisier: an information gap. Contrastive alignment keeps only what A and "
    "B share,\n"
    "so a linear probe on the aligned embeddings of A, of B and of both (A+B) shows how much\n"
    "modality-specific information each method keeps; raw-pixel probes give the reference.";

struct settings {
  std::string data_dir, out_dir, methods = "all";
  bool quick = false, smoke = false, check = false, no_progress = false;
  int threads = 1;
  index_t train_size = 0, test_size = 0;
  int epochs = 10;
  index_t batch = 256;
  index_t small_batch = 32;
  double lr = 2e-3, weight_decay = 0.05, warmup = 0.05, temperature = 0.1;
  double noise_b = 0.2;
  std::vector<index_t> hidden{256, 128};
  index_t head_hidden = 128, embed = 64;
  double lambda_sep = 1, lambda_br = 1;
  double gamma_alpha = 1, gamma_beta = 0.9;   // the library's defaults (docs/gamma_nce.md)
  std::vector<double> lambda_gc{0.25, 0.01};  // one row per weight
  int probe_epochs = 20;
  double probe_lr = 3e-3;
  std::uint64_t seed = 1;
  encoder::augment_options aug;  // the augmented views Va, Ua of the in-modal terms
  settings() {
    aug.crop_scale_min = 1;  // half images: no resized crop
    aug.max_shift = 1;
    aug.flip_prob = 0.5;
    aug.cutout_prob = 0.25;
    aug.cutout_size = 6;
    aug.noise_std = 0.05;
  }
};

// ---- towers -----------------------------------------------------------------------------------

/// One modality's encoder: backbone -> projection head -> L2 (the embedding z), plus, for
/// feature separation, an "independent" linear head on the backbone output -> L2.
struct tower {
  encoder::sequential<float> backbone, head, independent;
  encoder::l2_norm<float> norm, norm_i;

  tower(const std::string& name, index_t in, const settings& s, std::uint64_t seed)
      : backbone(encoder::make_mlp_encoder<float>(name + ".backbone", in, s.hidden, seed,
                                                  encoder::activation::gelu, false)),
        head(encoder::make_projection_head<float>(name + ".head", s.hidden.back(), s.head_hidden,
                                                  s.embed, seed)),
        independent(name + ".independent") {
    independent.add<encoder::linear<float>>(s.hidden.back(), s.embed, seed);
  }
  std::vector<encoder::parameter<float>*> parameters(bool with_independent) {
    auto p = backbone.parameters();
    for (auto* q : head.parameters()) p.push_back(q);
    if (with_independent)
      for (auto* q : independent.parameters()) p.push_back(q);
    return p;
  }
  fmat embed(const fmat& x) { return norm.forward(head.infer(backbone.infer(x))); }
};

struct step_info {
  const std::vector<index_t>* ids;  // dataset indices of the batch rows
  long step;
  int epoch;
};

/// Adds weight * dL/d(inputs) of the loss (returns weight * loss).
using loss_fn = std::function<double(views& a, views& b, const step_info&)>;

struct method {
  std::string key;   // --methods selects by key
  std::string name;  // table row
  std::string note;  // --help and README
  bool small_batch = false;
  bool needs_aug = false;
  bool needs_independent = false;
  std::function<loss_fn(index_t n_train)> make;  // a fresh loss (and its state) per run
};

std::vector<method> make_methods(const settings& s) {
  const double tau = s.temperature;
  std::vector<method> m;
  m.push_back({"clip", "CLIP", "symmetric InfoNCE between A and B (the CLIP loss)", false, false,
               false, [tau](index_t) -> loss_fn {
                 return [tau](views& a, views& b, const step_info&) {
                   return add_info_nce(a.z, b.z, a.gz, b.gz, 1.0, true, tau);
                 };
               }});
  m.push_back({"lcon", "L_Con (CLIP + in-modal)",
               "the regularisers' base loss: (1/4)(InfoNCE(A,B) + InfoNCE(B,A) + InfoNCE(A,A') + "
               "InfoNCE(B,B'))",
               false, true, false, [tau](index_t) -> loss_fn {
                 return
                     [tau](views& a, views& b, const step_info&) { return add_l_con(a, b, tau); };
               }});
  m.push_back({"sep", "L_Con + L_Sep",
               "L_Con + lambda_sep L_Sep: feature separation (orthogonal independent features, "
               "their in-modal "
               "InfoNCE and uniformity)",
               false, true, true, [tau, lambda = s.lambda_sep](index_t) -> loss_fn {
                 return [tau, lambda](views& a, views& b, const step_info&) {
                   return add_l_con(a, b, tau) + add_feature_separation(a, b, lambda, tau);
                 };
               }});
  m.push_back({"br", "L_Con + L_Br",
               "L_Con + lambda_br L_Br: Brownian bridge, A's augmented view pulled onto the A-B "
               "bridge at t = 0.25",
               false, true, false, [tau, lambda = s.lambda_br](index_t) -> loss_fn {
                 return [tau, lambda](views& a, views& b, const step_info&) {
                   return add_l_con(a, b, tau) + add_brownian_bridge(a, b, lambda);
                 };
               }});
  for (std::size_t k = 0; k < s.lambda_gc.size(); ++k) {
    const double lambda = s.lambda_gc[k];
    std::ostringstream w;
    w << lambda;
    m.push_back({k == 0 ? std::string("gc") : "gc" + std::to_string(k + 1),
                 "L_Con + L_GC (weight " + w.str() + ")",
                 "L_Con + " + w.str() +
                     " (L_GC + L^a_GC): geometric consistency of cross- and in-modal similarities",
                 false, true, false, [tau, lambda](index_t) -> loss_fn {
                   return [tau, lambda](views& a, views& b, const step_info&) {
                     return add_l_con(a, b, tau) + add_geometric_consistency(a, b, lambda);
                   };
                 }});
  }
  m.push_back({"clip-small", "CLIP, small batch",
               "the CLIP loss at --small-batch (the gamma loss's baseline)", true, false, false,
               [tau](index_t) -> loss_fn {
                 return [tau](views& a, views& b, const step_info&) {
                   return add_info_nce(a.z, b.z, a.gz, b.gz, 1.0, true, tau);
                 };
               }});
  m.push_back(
      {"gamma-small", "gamma loss, small batch",
       "the gamma-auxiliary decomposable loss (alpha --gamma-alpha, rate EMA beta --gamma-beta) at "
       "--small-batch; the objective is its surrogate, not comparable to InfoNCE",
       true, false, false,
       [tau, alpha = s.gamma_alpha, beta = s.gamma_beta,
        seed = s.seed](index_t n_train) -> loss_fn {
         auto state = std::make_shared<contrastive::normalizer_state>(n_train, 2);
         contrastive::gamma_nce_options o;
         o.temperature = tau;
         o.alpha = alpha;
         o.beta = beta;
         o.seed = seed;
         return [state, o](views& a, views& b, const step_info& info) mutable {
           o.step = static_cast<std::uint32_t>(info.step);
           const std::vector<std::int64_t> ids(info.ids->begin(), info.ids->end());
           return add_gamma_nce(a, b, ids, *state, o, 1.0);
         };
       }});
  return m;
}

// ---- training ---------------------------------------------------------------------------------

struct run_result {
  std::string name;
  index_t batch = 0;
  long steps = 0;
  double seconds = 0;
  std::vector<double> losses, clip_losses, lrs;
  long steps_per_epoch = 1;
  fmat za_tr, zb_tr, za_te, zb_te;  // embeddings for the probes
};

run_result train_method(const method& meth, const modalities& train, const modalities& test,
                        const settings& s) {
  run_result r;
  r.name = meth.name;
  encoder::stopwatch clock;
  const index_t n = train.a.rows();
  const index_t batch = std::min(meth.small_batch ? s.small_batch : s.batch, n);
  r.batch = batch;
  r.steps_per_epoch = n / batch;
  const long total = r.steps_per_epoch * s.epochs;
  tower ta("A", train.a.cols(), s, s.seed), tb("B", train.b_clean.cols(), s, s.seed + 1);
  auto params = ta.parameters(meth.needs_independent);
  for (auto* p : tb.parameters(meth.needs_independent)) params.push_back(p);
  encoder::adamw<float> opt(params, encoder::adamw_options{0.9, 0.999, 1e-8, s.weight_decay});
  const encoder::cosine_schedule sched{
      s.lr, static_cast<long>(s.warmup * static_cast<double>(total)), total, 0};
  loss_fn loss = meth.make(n);
  encoder::progress_bar bar(meth.key, total, s.epochs, "pairs");

  auto forward = [&](tower& t, const fmat& x, const fmat* xa, views& v) -> fmat {
    const index_t b = x.rows();
    fmat in = x;
    if (xa) {
      in.resize(2 * b, x.cols());
      in.topRows(b) = x;
      in.bottomRows(b) = *xa;
    }
    const fmat h = t.backbone.forward(in);
    const fmat z = t.norm.forward(t.head.forward(h));
    v.z = z.topRows(b);
    v.gz = fmat::Zero(b, z.cols());
    if (xa) {
      v.za = z.bottomRows(b);
      v.gza = fmat::Zero(b, z.cols());
    }
    if (meth.needs_independent) {
      const fmat zi = t.norm_i.forward(t.independent.forward(h));
      v.zi = zi.topRows(b);
      v.gzi = fmat::Zero(b, zi.cols());
      if (xa) {
        v.zia = zi.bottomRows(b);
        v.gzia = fmat::Zero(b, zi.cols());
      }
    }
    return h;
  };
  auto backward = [&](tower& t, const views& v, bool aug) {
    const index_t b = v.z.rows();
    fmat gz = v.gz;
    if (aug) {
      gz.resize(2 * b, v.z.cols());
      gz.topRows(b) = v.gz;
      gz.bottomRows(b) = v.gza;
    }
    fmat gh = t.head.backward(t.norm.backward(gz));
    if (meth.needs_independent) {
      fmat gzi = v.gzi;
      if (aug) {
        gzi.resize(2 * b, v.zi.cols());
        gzi.topRows(b) = v.gzi;
        gzi.bottomRows(b) = v.gzia;
      }
      gh += t.independent.backward(t.norm_i.backward(gzi));
    }
    t.backbone.backward(gh);
  };

  long step = 0;
  for (int epoch = 0; epoch < s.epochs; ++epoch) {
    const auto ep = static_cast<std::uint32_t>(epoch);
    const auto perm = encoder::permutation(n, s.seed, ep);
    for (long k = 0; k < r.steps_per_epoch; ++k) {
      const std::vector<index_t> ids(perm.begin() + k * batch, perm.begin() + (k + 1) * batch);
      const fmat xa = encoder::gather_rows(train.a, ids);
      const fmat xb = encoder::noisy_b(train, ids, s.seed, s.noise_b, ep);
      fmat xaa, xba;
      if (meth.needs_aug) {
        xaa = encoder::augment_each(xa, ids, half_h, half_w, s.aug, s.seed, ep,
                                    encoder::stream_view_a);
        xba = encoder::augment_each(xb, ids, half_h, half_w, s.aug, s.seed, ep,
                                    encoder::stream_view_b);
      }
      opt.zero_grad();
      views va, vb;
      forward(ta, xa, meth.needs_aug ? &xaa : nullptr, va);
      forward(tb, xb, meth.needs_aug ? &xba : nullptr, vb);
      const double l = loss(va, vb, step_info{&ids, step, epoch});
      backward(ta, va, meth.needs_aug);
      backward(tb, vb, meth.needs_aug);
      const double lr = sched(step);
      opt.step(lr);
      r.losses.push_back(l);
      r.clip_losses.push_back(clip_value(va.z, vb.z, s.temperature));
      r.lrs.push_back(lr);
      ++step;
      if (!s.no_progress) bar.update(step, epoch + 1, l, static_cast<long>(step * batch));
    }
  }
  if (!s.no_progress) bar.finish();
  r.steps = step;
  r.seconds = clock.seconds();
  r.za_tr = ta.embed(train.a);
  r.zb_tr = tb.embed(train.b_eval);
  r.za_te = ta.embed(test.a);
  r.zb_te = tb.embed(test.b_eval);
  return r;
}

void apply_presets(settings& s, const CLI::App& app) {
  auto unset = [&](const char* opt) { return app.count(opt) == 0; };
  if (s.smoke) {
    if (unset("--train-size")) s.train_size = 512;
    if (unset("--test-size")) s.test_size = 500;
    if (unset("--epochs")) s.epochs = 3;
    if (unset("--batch")) s.batch = 64;
    if (unset("--small-batch")) s.small_batch = 32;
    if (unset("--hidden")) s.hidden = {64, 32};
    if (unset("--head-hidden")) s.head_hidden = 32;
    if (unset("--embed")) s.embed = 16;
    if (unset("--probe-epochs")) s.probe_epochs = 10;
    s.check = true;
  } else if (s.quick) {
    // The demo: every pair for 2 epochs, the full probe, and two methods that tell the story:
    // CLIP probes below raw pixels, L_Con + L_GC at weight 0.01 above them (seeds 1-3, README).
    if (unset("--epochs")) s.epochs = 2;
    if (unset("--methods")) s.methods = "clip,gc2";
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  settings s;
  std::string methods_help = "comma-separated method keys, or all:";
  for (const auto& m : make_methods(s))
    methods_help += "\n  " + m.key + ": " + m.name + " -- " + m.note;
  CLI::App app{
      std::string("Two-tower contrastive training on Fashion-MNIST with an information gap.\n\n") +
      setting_text +
      "\n\nEach method trains two MLP towers (linear -> LayerNorm -> GELU, projection head, L2) "
      "from the same\n"
      "initialisation; its row reports the test CLIP loss and A->B top-1 retrieval (test chunks of "
      "256)\n"
      "and linear-probe accuracy (logistic regression, AdamW) on the embeddings of A, B and A+B.\n"
      "Data: Debian package dataset-fashion-mnist."};
  app.option_defaults()->always_capture_default();
  app.add_option(
      "--data-dir", s.data_dir,
      std::string("directory of the IDX .gz files (default: $CONTRASTIVE_FASHION_MNIST_DIR or ") +
          encoder::fashion_mnist_default_dir + ")");
  app.add_option("--out-dir", s.out_dir,
                 "where the CSV and SVG go (default: <executable dir>/runs)");
  app.add_option("--methods", s.methods, methods_help);
  app.add_flag("--quick", s.quick,
               "demo setting: every training pair, 2 epochs, methods clip and gc2");
  app.add_flag("--smoke", s.smoke,
               "test setting: 512 images, tiny towers, a few steps; implies --check");
  app.add_flag("--check", s.check,
               "exit with 2 unless every loss fell and the CLIP probe on A+B beat chance");
  app.add_flag("--no-progress", s.no_progress, "no progress bar");
  app.add_option("--threads", s.threads,
                 "threads for Eigen's GEMMs and the loss tile sweeps (OpenMP; 0 = all cores)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--train-size", s.train_size, "training images (0 = all 60000)");
  app.add_option("--test-size", s.test_size, "test images (0 = all 10000)");
  app.add_option("--epochs", s.epochs, "training epochs (every method sees the same data passes)")
      ->check(CLI::PositiveNumber);
  app.add_option("--batch", s.batch, "pairs per batch")->check(CLI::Range(2, 1 << 20));
  app.add_option("--small-batch", s.small_batch, "pairs per batch of the small-batch rows")
      ->check(CLI::Range(2, 1 << 20));
  app.add_option("--lr", s.lr, "peak AdamW learning rate")->check(CLI::NonNegativeNumber);
  app.add_option("--weight-decay", s.weight_decay, "AdamW decoupled weight decay")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--warmup", s.warmup, "warm-up, fraction of the steps")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--temperature", s.temperature, "temperature of every InfoNCE term")
      ->check(CLI::PositiveNumber);
  app.add_option("--noise-b", s.noise_b, "std of the Gaussian noise on modality B")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--hidden", s.hidden, "backbone widths of each tower")->delimiter(',');
  app.add_option("--head-hidden", s.head_hidden, "projection head hidden width")
      ->check(CLI::PositiveNumber);
  app.add_option("--embed", s.embed, "embedding width")->check(CLI::PositiveNumber);
  app.add_option("--lambda-sep", s.lambda_sep,
                 "weight of L_Sep (library default 1, docs/README.md)");
  app.add_option("--lambda-br", s.lambda_br, "weight of L_Br (library default 1, docs/README.md)");
  app.add_option("--lambda-gc", s.lambda_gc,
                 "weights of L_GC + L^a_GC, one table row (method gc, gc2, ...) each; 0.25 is the "
                 "library's and "
                 "CyCLIP's default")
      ->delimiter(',');
  app.add_option("--gamma-alpha", s.gamma_alpha,
                 "gamma loss: shape alpha of the auxiliary variables")
      ->check(CLI::PositiveNumber);
  app.add_option("--gamma-beta", s.gamma_beta,
                 "gamma loss: weight of the new estimate in the rate EMA")
      ->check(CLI::Range(1e-9, 1.0));
  app.add_option("--probe-epochs", s.probe_epochs, "linear probe epochs")
      ->check(CLI::PositiveNumber);
  app.add_option("--probe-lr", s.probe_lr, "linear probe peak learning rate")
      ->check(CLI::PositiveNumber);
  app.add_option("--seed", s.seed, "seed of every random draw");
  CLI11_PARSE(app, argc, argv);
  apply_presets(s, app);
  const int threads = encoder::set_threads(s.threads);
  if (s.hidden.empty()) {
    std::cerr << "train_two_tower: --hidden needs at least one width\n";
    return 1;
  }
  if (s.out_dir.empty()) s.out_dir = encoder::default_out_dir(argv[0]);
  s.out_dir = encoder::absolute_path(s.out_dir);

  std::vector<method> methods;
  for (const auto& m : make_methods(s)) {
    const std::string list = "," + s.methods + ",";
    if (s.methods == "all" || list.find("," + m.key + ",") != std::string::npos)
      methods.push_back(m);
  }
  if (methods.empty()) {
    std::cerr << "train_two_tower: no method matches --methods " << s.methods << " (see --help)\n";
    return 1;
  }

  try {
    encoder::stopwatch total;
    const std::string dir = encoder::fashion_mnist_dir(s.data_dir);
    encoder::image_dataset train_img, test_img;
    try {
      train_img = encoder::load_fashion_mnist(dir, encoder::split::train, s.train_size);
      test_img = encoder::load_fashion_mnist(dir, encoder::split::test, s.test_size);
    } catch (const encoder::data_error& e) {
      std::cerr << "train_two_tower: " << e.what() << "\n";
      if (e.missing)
        std::cerr << "train_two_tower: skipped (exit code " << encoder::exit_skipped << ")\n";
      return e.missing ? encoder::exit_skipped : 1;
    }
    std::filesystem::create_directories(s.out_dir);
    const modalities train = encoder::split_modalities(train_img, s.seed, s.noise_b, 0),
                     test = encoder::split_modalities(test_img, s.seed, s.noise_b, 1);
    std::printf(
        "Two towers on Fashion-MNIST: %ld training / %ld test pairs from %s\n"
        "A = top half (clean), B = bottom half + N(0, %g^2) noise; %d epochs, batch %ld (small "
        "%ld), "
        "temperature %g, seed %llu, %d thread(s)\n",
        static_cast<long>(train.a.rows()), static_cast<long>(test.a.rows()), dir.c_str(), s.noise_b,
        s.epochs, static_cast<long>(s.batch), static_cast<long>(s.small_batch), s.temperature,
        static_cast<unsigned long long>(s.seed), threads);

    auto probe = [&](const fmat& tr, const fmat& te, const std::string& label, std::uint64_t seed) {
      encoder::probe_options po;
      po.epochs = s.probe_epochs;
      po.lr = s.probe_lr;
      po.seed = seed;
      po.label = label;
      po.progress = false;
      return encoder::linear_probe(tr, train.labels, te, test.labels, po).test_accuracy;
    };

    double raw_ab = 0, best_ab = -1;  // probe A+B: raw pixels, the best method
    std::string best_name;
    encoder::text_table table;
    table.header = {"method",     "batch",   "steps",   "train s",  "test CLIP loss",
                    "A->B top-1", "probe A", "probe B", "probe A+B"};
    {
      const double pa = probe(train.a, test.a, "raw A", s.seed + 10);
      const double pb = probe(train.b_eval, test.b_eval, "raw B", s.seed + 11);
      const double pab =
          probe(concat(train.a, train.b_eval), concat(test.a, test.b_eval), "raw A+B", s.seed + 12);
      table.add({"raw pixels (no training)", "-", "-", "-", "-", "-", encoder::percent(pa),
                 encoder::percent(pb), encoder::percent(pab)});
      raw_ab = pab;
      std::printf("raw-pixel probes: A %.2f%%, B %.2f%%, A+B %.2f%%\n", 100 * pa, 100 * pb,
                  100 * pab);
    }

    std::vector<encoder::curve> curves;
    bool ok = true;
    double clip_probe_ab = -1;
    for (std::size_t k = 0; k < methods.size(); ++k) {
      const method& m = methods[k];
      std::printf("[%zu/%zu] %s: %s\n", k + 1, methods.size(), m.name.c_str(), m.note.c_str());
      const run_result r = train_method(m, train, test, s);
      double test_clip = 0, top1 = 0;
      alignment_metrics(r.za_te, r.zb_te, s.temperature, std::min<index_t>(256, r.za_te.rows()),
                        test_clip, top1);
      const double pa = probe(r.za_tr, r.za_te, m.key + " A", s.seed + 20);
      const double pb = probe(r.zb_tr, r.zb_te, m.key + " B", s.seed + 21);
      const double pab =
          probe(concat(r.za_tr, r.zb_tr), concat(r.za_te, r.zb_te), m.key + " A+B", s.seed + 22);
      if (m.key == "clip") clip_probe_ab = pab;
      if (pab > best_ab) {
        best_ab = pab;
        best_name = m.name;
      }
      table.add({m.name, std::to_string(r.batch), std::to_string(r.steps),
                 encoder::fixed(r.seconds, 1), encoder::fixed(test_clip, 3),
                 encoder::percent(top1, 1), encoder::percent(pa), encoder::percent(pb),
                 encoder::percent(pab)});
      std::printf(
          "    %ld steps in %.1f s; objective %.4f -> %.4f; test CLIP loss %.3f, A->B top-1 "
          "%.1f%%; "
          "probes A %.2f%%, B %.2f%%, A+B %.2f%%\n",
          r.steps, r.seconds, r.losses.front(), r.losses.back(), test_clip, 100 * top1, 100 * pa,
          100 * pb, 100 * pab);
      encoder::curve c, cc;
      c.run = cc.run = m.name + " (batch " + std::to_string(r.batch) + ")";
      c.phase = "training objective of each method";
      cc.phase = "batch CLIP loss (the same quantity for every method, at its own batch size)";
      c.steps_per_epoch = cc.steps_per_epoch = static_cast<double>(r.steps_per_epoch);
      for (std::size_t i = 0; i < r.losses.size(); ++i) {
        const int ep = static_cast<int>(i / static_cast<std::size_t>(r.steps_per_epoch)) + 1;
        c.push(static_cast<double>(i + 1), ep, r.losses[i], r.lrs[i]);
        cc.push(static_cast<double>(i + 1), ep, r.clip_losses[i], r.lrs[i]);
      }
      curves.push_back(c);
      curves.push_back(cc);
      if (s.check) {
        double first = 0, last = 0;
        const bool fell = encoder::loss_fell(r.losses, &first, &last);
        std::printf(
            "check: %s objective fell (first-quarter mean %.4f, last-quarter mean %.4f): %s\n",
            m.name.c_str(), first, last, fell ? "yes" : "NO");
        ok = ok && fell;
      }
    }

    // Curves: objectives and batch CLIP losses in separate panels.
    std::stable_sort(
        curves.begin(), curves.end(),
        [](const encoder::curve& x, const encoder::curve& y) { return x.phase > y.phase; });
    const std::string csv = s.out_dir + "/two_tower_curves.csv", svg = s.out_dir + "/two_tower.svg";
    encoder::write_curves_csv(csv, curves);
    encoder::write_curves_svg(svg,
                              "Two towers on Fashion-MNIST: A = top half, B = noisy bottom half (" +
                                  std::to_string(train.a.rows()) + " pairs, " +
                                  std::to_string(s.epochs) + " epochs)",
                              curves, &table);

    std::printf(
        "\nTwo-tower results on the Fashion-MNIST test set (%ld pairs; chance 10%%); probes are "
        "linear on the "
        "L2-normalised embeddings:\n%s",
        static_cast<long>(test.a.rows()), table.str().c_str());
    std::printf("curves: %s\nplot:   %s\ntotal time %.1f s\n", csv.c_str(), svg.c_str(),
                total.seconds());
    const double gain = 100 * (best_ab - raw_ab);
    std::printf(
        "summary: the best joint embedding (%s) probes %.2f%% on A+B, %s raw pixels "
        "(%.2f%%) by %.2f points%s\n",
        best_name.c_str(), 100 * best_ab, gain > 0 ? "above" : "below", 100 * raw_ab,
        std::abs(gain),
        gain > 0 ? ""
                 : ": an aligned embedding keeps what A and B share and loses what only "
                   "one of them holds, and a short run keeps less (README: the full "
                   "run's L_GC 0.01 row is above)");

    if (s.check) {
      if (clip_probe_ab >= 0) {
        const double thr = encoder::chance_threshold(test.a.rows());
        const bool beat = clip_probe_ab > thr;
        std::printf("check: CLIP probe A+B test accuracy %.2f%% > chance + 3 s.e. (%.2f%%): %s\n",
                    100 * clip_probe_ab, 100 * thr, beat ? "yes" : "NO");
        ok = ok && beat;
      }
      if (!ok) return encoder::exit_check_failed;
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "train_two_tower: error: " << e.what() << "\n";
    return 1;
  }
}
