#ifndef CONTRASTIVE_EXAMPLES_ENCODER_REPORT_HPP
#define CONTRASTIVE_EXAMPLES_ENCODER_REPORT_HPP

// Results a person can read at a glance: training curves kept per run, written as one CSV
// (run,phase,step,epoch,loss,lr) and as an SVG written directly (one panel per phase with every
// run's raw and smoothed loss, and the results table underneath), plus aligned text tables.

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common.hpp"

namespace encoder {

struct curve {
  std::string run;    // e.g. "simclr", "CLIP + L_GC"
  std::string phase;  // e.g. "pretraining (NT-Xent)"; one SVG panel per phase
  std::vector<double> step, loss, lr;
  std::vector<int> epoch;
  double steps_per_epoch =
      0;                  // > 0: the SVG's x axis is epochs (runs of different batch sizes align)
  double smoothing = -1;  // EMA weight of the bold line: < 0 automatic, 0 none (raw values)
  std::string y_label = "loss";  // the panel's y axis (from its first curve)
  void push(double s, int e, double l, double r) {
    step.push_back(s);
    epoch.push_back(e);
    loss.push_back(l);
    lr.push_back(r);
  }
};

/// A text table; cells are strings, columns are aligned; printed in Markdown form.
struct text_table {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;

  void add(std::vector<std::string> row) { rows.push_back(std::move(row)); }
  std::vector<std::string> lines() const {
    std::vector<std::size_t> w(header.size(), 0);
    auto fit = [&](const std::vector<std::string>& r) {
      for (std::size_t i = 0; i < r.size() && i < w.size(); ++i) w[i] = std::max(w[i], r[i].size());
    };
    fit(header);
    for (const auto& r : rows) fit(r);
    auto line = [&](const std::vector<std::string>& r) {
      std::string s = "|";
      for (std::size_t i = 0; i < w.size(); ++i) {
        const std::string c = i < r.size() ? r[i] : "";
        s += " " + c + std::string(w[i] - c.size(), ' ') + " |";
      }
      return s;
    };
    std::vector<std::string> out{line(header)};
    std::string sep = "|";
    for (std::size_t i = 0; i < w.size(); ++i) sep += std::string(w[i] + 2, '-') + "|";
    out.push_back(sep);
    for (const auto& r : rows) out.push_back(line(r));
    return out;
  }
  std::string str() const {
    std::string s;
    for (const auto& l : lines()) s += l + "\n";
    return s;
  }
};

inline std::string fixed(double v, int digits = 2) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}
inline std::string percent(double v, int digits = 2) { return fixed(100 * v, digits) + "%"; }

inline void write_curves_csv(const std::string& path, const std::vector<curve>& curves) {
  std::ofstream os(path);
  if (!os) throw error("cannot write '" + path + "'");
  os << "run,phase,step,epoch,loss,lr\n";
  auto q = [](const std::string& s) {
    std::string o = "\"";
    for (char c : s) o += c == '"' ? std::string("\"\"") : std::string(1, c);
    return o + "\"";
  };
  os.precision(8);
  for (const auto& c : curves)
    for (std::size_t i = 0; i < c.step.size(); ++i)
      os << q(c.run) << ',' << q(c.phase) << ',' << c.step[i] << ',' << c.epoch[i] << ','
         << c.loss[i] << ',' << c.lr[i] << '\n';
  if (!os) throw error("write failed: '" + path + "'");
}

namespace detail {

inline std::string xml_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '&':
        o += "&amp;";
        break;
      case '<':
        o += "&lt;";
        break;
      case '>':
        o += "&gt;";
        break;
      case '"':
        o += "&quot;";
        break;
      default:
        o += c;
    }
  }
  return o;
}

/// "Nice" tick positions covering [lo, hi].
inline std::vector<double> ticks(double lo, double hi, int target = 5) {
  std::vector<double> t;
  if (!(hi > lo)) return {lo};
  const double raw = (hi - lo) / target;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  for (double v = std::ceil(lo / step) * step; v <= hi + 1e-9 * step; v += step)
    t.push_back(std::abs(v) < 1e-12 * step ? 0 : v);
  return t;
}

inline std::string num(double v) {
  char buf[32];
  if (v != 0 && (std::abs(v) >= 1e5 || std::abs(v) < 1e-3))
    std::snprintf(buf, sizeof buf, "%.0e", v);
  else
    std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

/// Exponential moving average with bias correction (what the solid lines show).
inline std::vector<double> smooth(const std::vector<double>& y, double beta) {
  std::vector<double> out(y.size());
  double m = 0, w = 0;
  for (std::size_t i = 0; i < y.size(); ++i) {
    m = beta * m + (1 - beta) * y[i];
    w = beta * w + (1 - beta);
    out[i] = m / w;
  }
  return out;
}

}  // namespace detail

/// Writes an SVG: one panel per phase (loss against step, every run of that phase; faint raw
/// values and a smoothed line), then `table` in monospace.
inline void write_curves_svg(const std::string& path, const std::string& title,
                             const std::vector<curve>& curves, const text_table* table = nullptr) {
  static const char* palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                  "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
  std::vector<std::string> phases;
  for (const auto& c : curves)
    if (std::find(phases.begin(), phases.end(), c.phase) == phases.end()) phases.push_back(c.phase);

  const std::vector<std::string> tab = table ? table->lines() : std::vector<std::string>{};
  std::size_t longest_run = 0, longest_line = 0;
  for (const auto& c : curves) longest_run = std::max(longest_run, c.run.size());
  for (const auto& l : tab) longest_line = std::max(longest_line, l.size());
  // Widths from text lengths (about 6.6 px per 12 px sans-serif character, 7.3 px monospace).
  const double panel_w = 600, ml = 70, mt = 40, mb = 45, top0 = 50, panel_h = 300;
  const double mr = std::max(120.0, 50 + 6.6 * static_cast<double>(longest_run));
  const double W = std::max(ml + panel_w + mr, 2 * ml + 7.3 * static_cast<double>(longest_line));
  const double line_h = 15;
  const double H =
      top0 + phases.size() * (panel_h + 20) + (tab.empty() ? 10 : tab.size() * line_h + 40);
  std::ostringstream s;
  s << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H
    << "\" viewBox=\"0 0 " << W << ' ' << H << "\" font-family=\"sans-serif\" font-size=\"12\">\n"
    << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    << "<text x=\"" << W / 2
    << "\" y=\"28\" text-anchor=\"middle\" font-size=\"16\" font-weight=\"bold\">"
    << detail::xml_escape(title) << "</text>\n";

  for (std::size_t p = 0; p < phases.size(); ++p) {
    const double y0 = top0 + p * (panel_h + 20);
    const double px0 = ml, px1 = ml + panel_w, py0 = y0 + mt, py1 = y0 + panel_h - mb;
    double xmax = 0, ymin = 1e300, ymax = -1e300;
    std::vector<const curve*> cs;
    bool epochs = true;
    for (const auto& c : curves)
      if (c.phase == phases[p] && !c.step.empty()) epochs = epochs && c.steps_per_epoch > 0;
    auto xval = [epochs](const curve& c, std::size_t i) {
      return epochs ? c.step[i] / c.steps_per_epoch : c.step[i];
    };
    for (const auto& c : curves)
      if (c.phase == phases[p] && !c.step.empty()) {
        cs.push_back(&c);
        xmax = std::max(xmax, xval(c, c.step.size() - 1));
        for (double v : c.loss)
          if (std::isfinite(v)) {
            ymin = std::min(ymin, v);
            ymax = std::max(ymax, v);
          }
      }
    if (!(xmax > 0)) xmax = 1;
    if (!(ymax >= ymin)) ymin = 0, ymax = 1;
    if (ymax - ymin < 1e-9) ymax = ymin + 1;
    const double pad = 0.04 * (ymax - ymin);
    ymin -= pad;
    ymax += pad;
    auto X = [&](double v) { return px0 + (px1 - px0) * v / xmax; };
    auto Y = [&](double v) { return py1 - (py1 - py0) * (v - ymin) / (ymax - ymin); };
    s << "<text x=\"" << px0 << "\" y=\"" << y0 + 25 << "\" font-size=\"14\" font-weight=\"bold\">"
      << detail::xml_escape(phases[p]) << "</text>\n";
    s << "<rect x=\"" << px0 << "\" y=\"" << py0 << "\" width=\"" << px1 - px0 << "\" height=\""
      << py1 - py0 << "\" fill=\"none\" stroke=\"#444\"/>\n";
    for (double t : detail::ticks(0, xmax)) {
      s << "<line x1=\"" << X(t) << "\" y1=\"" << py0 << "\" x2=\"" << X(t) << "\" y2=\"" << py1
        << "\" stroke=\"#ddd\"/>\n<text x=\"" << X(t) << "\" y=\"" << py1 + 16
        << "\" text-anchor=\"middle\">" << detail::num(t) << "</text>\n";
    }
    for (double t : detail::ticks(ymin, ymax)) {
      s << "<line x1=\"" << px0 << "\" y1=\"" << Y(t) << "\" x2=\"" << px1 << "\" y2=\"" << Y(t)
        << "\" stroke=\"#ddd\"/>\n<text x=\"" << px0 - 6 << "\" y=\"" << Y(t) + 4
        << "\" text-anchor=\"end\">" << detail::num(t) << "</text>\n";
    }
    s << "<text x=\"" << (px0 + px1) / 2 << "\" y=\"" << py1 + 34 << "\" text-anchor=\"middle\">"
      << (epochs ? "epoch" : "step") << "</text>\n"
      << "<text transform=\"translate(" << px0 - 50 << ',' << (py0 + py1) / 2
      << ") rotate(-90)\" text-anchor=\"middle\">"
      << detail::xml_escape(cs.empty() ? std::string("loss") : cs.front()->y_label) << "</text>\n";
    for (std::size_t k = 0; k < cs.size(); ++k) {
      const curve& c = *cs[k];
      const char* col = palette[k % 10];
      const std::size_t n = c.step.size();
      const std::size_t every = n > 800 ? n / 800 : 1;
      const double beta = c.smoothing >= 0 ? c.smoothing : n > 50 ? 0.9 : 0.5;
      const std::vector<double> sm = beta > 0 ? detail::smooth(c.loss, beta) : c.loss;
      for (int pass = beta > 0 ? 0 : 1; pass < 2; ++pass) {
        const std::vector<double>& v = pass == 0 ? c.loss : sm;
        s << "<polyline fill=\"none\" stroke=\"" << col << "\" stroke-width=\""
          << (pass == 0 ? 0.8 : 1.8) << "\" stroke-opacity=\"" << (pass == 0 ? 0.25 : 1.0)
          << "\" points=\"";
        for (std::size_t i = 0; i < n; i += every)
          if (std::isfinite(v[i])) s << X(xval(c, i)) << ',' << Y(v[i]) << ' ';
        if (std::isfinite(v[n - 1])) s << X(xval(c, n - 1)) << ',' << Y(v[n - 1]);
        s << "\"/>\n";
      }
      const double ly = py0 + 14 + 18 * k;
      s << "<line x1=\"" << px1 + 12 << "\" y1=\"" << ly - 4 << "\" x2=\"" << px1 + 32 << "\" y2=\""
        << ly - 4 << "\" stroke=\"" << col << "\" stroke-width=\"2.5\"/>\n<text x=\"" << px1 + 38
        << "\" y=\"" << ly << "\">" << detail::xml_escape(c.run) << "</text>\n";
    }
  }
  if (!tab.empty()) {
    double y = top0 + phases.size() * (panel_h + 20) + 20;
    for (const auto& l : tab) {
      s << "<text x=\"" << ml << "\" y=\"" << y
        << "\" font-family=\"monospace\" xml:space=\"preserve\">" << detail::xml_escape(l)
        << "</text>\n";
      y += line_h;
    }
  }
  s << "</svg>\n";
  std::ofstream os(path);
  if (!os) throw error("cannot write '" + path + "'");
  os << s.str();
  if (!os) throw error("write failed: '" + path + "'");
}

}  // namespace encoder

#endif  // CONTRASTIVE_EXAMPLES_ENCODER_REPORT_HPP
