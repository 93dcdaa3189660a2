#ifndef CONTRASTIVE_EXAMPLES_ENCODER_PROGRESS_HPP
#define CONTRASTIVE_EXAMPLES_ENCODER_PROGRESS_HPP

// A training progress bar on stderr: epoch, step, bar, loss, throughput and ETA on one line that
// is redrawn in place with '\r' on a terminal (at most 10 times a second), or plain lines (about
// ten per run, plus one per epoch end) when stderr is a file or a pipe, e.g. under ctest or CI.

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>

namespace encoder {

inline std::string format_duration(double seconds) {
  if (!(seconds >= 0) || !std::isfinite(seconds)) return "--:--";
  const long s = static_cast<long>(seconds + 0.5);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
  else
    std::snprintf(buf, sizeof buf, "%02ld:%02ld", s / 60, s % 60);
  return buf;
}

class progress_bar {
 public:
  using clock = std::chrono::steady_clock;

  /// total_steps over `epochs` epochs; `unit` names what update()'s item counts are (images).
  progress_bar(std::string label, long total_steps, int epochs, std::string unit = "img",
               FILE* out = stderr)
      : label_(std::move(label)),
        unit_(std::move(unit)),
        total_(total_steps > 0 ? total_steps : 1),
        epochs_(epochs > 0 ? epochs : 1),
        out_(out),
        tty_(::isatty(::fileno(out)) != 0),
        start_(clock::now()),
        last_draw_(start_) {}

  /// Forces plain-line mode (or the in-place mode) regardless of the terminal.
  void set_tty(bool tty) { tty_ = tty; }

  /// After `step` steps (1-based) in epoch `epoch` (1-based), having processed `items` items in
  /// total, with the latest (or smoothed) loss.
  void update(long step, int epoch, double loss, long items) {
    step_ = step;
    epoch_ = epoch;
    loss_ = loss;
    items_ = items;
    const auto now = clock::now();
    const bool last = step >= total_;
    const bool epoch_end = step % steps_per_epoch() == 0;
    if (tty_) {
      if (last || now - last_draw_ >= std::chrono::milliseconds(100)) {
        draw(now, true);
        last_draw_ = now;
      }
    } else {
      const long every = total_ >= 10 ? total_ / 10 : 1;
      if (last || epoch_end || step % every == 0) draw(now, false);
    }
  }

  /// Ends the line (terminal mode) and prints the total time.
  void finish() {
    const double secs = elapsed();
    if (tty_) std::fputs("\n", out_);
    std::fprintf(out_, "%s: done, %ld steps in %s (%.1f s)\n", label_.c_str(), step_,
                 format_duration(secs).c_str(), secs);
    std::fflush(out_);
  }

  double elapsed() const { return std::chrono::duration<double>(clock::now() - start_).count(); }

 private:
  long steps_per_epoch() const {
    const long s = (total_ + epochs_ - 1) / epochs_;
    return s > 0 ? s : 1;
  }

  void draw(clock::time_point now, bool in_place) {
    const double secs = std::chrono::duration<double>(now - start_).count();
    const double rate = secs > 0 ? static_cast<double>(items_) / secs : 0;
    const double eta =
        step_ > 0 ? secs * static_cast<double>(total_ - step_) / static_cast<double>(step_) : -1;
    const int width = 24;
    const double frac = static_cast<double>(step_) / static_cast<double>(total_);
    const int filled = static_cast<int>(frac * width + 0.5);
    std::string bar(static_cast<std::size_t>(filled), '#');
    bar += std::string(static_cast<std::size_t>(width - filled), '.');
    std::fprintf(out_, "%s%s epoch %d/%d step %ld/%ld [%s] %3.0f%% loss %.4f %.0f %s/s ETA %s%s",
                 in_place ? "\r" : "", label_.c_str(), epoch_, epochs_, step_, total_, bar.c_str(),
                 100 * frac, loss_, rate, unit_.c_str(), format_duration(eta).c_str(),
                 in_place ? "\033[K" : "\n");
    std::fflush(out_);
  }

  std::string label_, unit_;
  long total_;
  int epochs_;
  FILE* out_;
  bool tty_;
  clock::time_point start_, last_draw_;
  long step_ = 0, items_ = 0;
  int epoch_ = 0;
  double loss_ = 0;
};

}  // namespace encoder

#endif  // CONTRASTIVE_EXAMPLES_ENCODER_PROGRESS_HPP
