#include "support/test_config.hpp"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "encoder/app.hpp"
#include "encoder/progress.hpp"
#include "encoder/report.hpp"

namespace fs = std::filesystem;

namespace {
std::string slurp(const fs::path& p) {
  std::ifstream is(p);
  std::stringstream s;
  s << is.rdbuf();
  return s.str();
}
std::string captured(FILE* f) {
  std::fflush(f);
  std::rewind(f);
  std::string s;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
  return s;
}
}  // namespace

TEST_CASE("progress bar: plain lines off a terminal", "[encoder][progress]") {
  FILE* f = std::tmpfile();
  REQUIRE(f != nullptr);
  {
    encoder::progress_bar bar("train", 20, 2, "img", f);
    bar.set_tty(false);
    for (long s = 1; s <= 20; ++s) bar.update(s, s <= 10 ? 1 : 2, 5.0 - 0.1 * s, s * 32);
    bar.finish();
  }
  const std::string out = captured(f);
  std::fclose(f);
  CHECK(out.find('\r') == std::string::npos);
  CHECK_THAT(out, Catch::Contains("train epoch 1/2 step 10/20") &&
                      Catch::Contains("train epoch 2/2 step 20/20") &&
                      Catch::Contains("loss 3.0000") && Catch::Contains("img/s") &&
                      Catch::Contains("ETA") && Catch::Contains("100%") &&
                      Catch::Contains("train: done, 20 steps"));
  const auto lines = std::count(out.begin(), out.end(), '\n');
  CHECK(lines >= 10);
  CHECK(lines <= 12);
}

TEST_CASE("progress bar: one line redrawn in place on a terminal", "[encoder][progress]") {
  FILE* f = std::tmpfile();
  REQUIRE(f != nullptr);
  {
    encoder::progress_bar bar("train", 3, 1, "img", f);
    bar.set_tty(true);
    for (long s = 1; s <= 3; ++s) bar.update(s, 1, 1.0, s);
    bar.finish();
  }
  const std::string out = captured(f);
  std::fclose(f);
  CHECK(out.rfind("\rtrain epoch 1/1 step 3/3", 0) == 0);  // throttled: first draw is the last step
  CHECK(std::count(out.begin(), out.end(), '\n') == 2);
}

TEST_CASE("format_duration", "[encoder][progress]") {
  CHECK(encoder::format_duration(0) == "00:00");
  CHECK(encoder::format_duration(61.4) == "01:01");
  CHECK(encoder::format_duration(3725) == "1:02:05");
  CHECK(encoder::format_duration(-1) == "--:--");
}

TEST_CASE("text table aligns columns", "[encoder][report]") {
  encoder::text_table t;
  t.header = {"features", "test acc"};
  t.add({"raw pixels", "84.10%"});
  t.add({"x", "1%"});
  const auto lines = t.lines();
  REQUIRE(lines.size() == 4);
  CHECK(lines[0] == "| features   | test acc |");
  CHECK(lines[1] == "|------------|----------|");
  CHECK(lines[3] == "| x          | 1%       |");
  CHECK(encoder::percent(0.84104) == "84.10%");
}

TEST_CASE("curves are written as CSV and SVG", "[encoder][report]") {
  const auto dir =
      fs::temp_directory_path() / ("encoder_report_tests_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::vector<encoder::curve> cs(2);
  cs[0].run = "CLIP";
  cs[0].phase = "two-tower <training>";
  cs[1].run = "probe, \"raw\"";
  cs[1].phase = "probe";
  for (int s = 0; s < 100; ++s) {
    cs[0].push(s, s / 50 + 1, 5.0 / (1 + s), 1e-3);
    cs[1].push(s, 1, 2.0 - 0.01 * s, 1e-3);
  }
  encoder::text_table t;
  t.header = {"method", "acc"};
  t.add({"CLIP & co", "50%"});
  encoder::write_curves_csv((dir / "c.csv").string(), cs);
  encoder::write_curves_svg((dir / "c.svg").string(), "title", cs, &t);
  const std::string csv = slurp(dir / "c.csv");
  CHECK(std::count(csv.begin(), csv.end(), '\n') == 201);
  CHECK(csv.rfind("run,phase,step,epoch,loss,lr\n\"CLIP\",\"two-tower <training>\",0,1,5,", 0) ==
        0);
  CHECK_THAT(csv, Catch::Contains("\"probe, \"\"raw\"\"\""));
  const std::string svg = slurp(dir / "c.svg");
  CHECK(svg.rfind("<svg xmlns=\"http://www.w3.org/2000/svg\"", 0) == 0);
  CHECK(std::count(svg.begin(), svg.end(), '<') - std::count(svg.begin(), svg.end(), '>') == 0);
  CHECK_THAT(svg, Catch::Contains("two-tower &lt;training&gt;") &&
                      Catch::Contains("CLIP &amp; co") && Catch::Contains("<polyline") &&
                      Catch::EndsWith("</svg>\n"));
  CHECK_THAT(svg, Catch::Contains(">step</text>"));
  // With steps per epoch on every curve of a panel, its x axis is epochs.
  for (auto& c : cs) c.steps_per_epoch = 50;
  encoder::write_curves_svg((dir / "e.svg").string(), "title", cs, nullptr);
  const std::string esvg = slurp(dir / "e.svg");
  CHECK_THAT(esvg, Catch::Contains(">epoch</text>") && !Catch::Contains(">step</text>"));
  // smoothing 0 draws the raw values once; y_label names the axis.
  for (auto& c : cs) {
    c.smoothing = 0;
    c.y_label = "top-1 (%)";
  }
  encoder::write_curves_svg((dir / "r.svg").string(), "title", cs, nullptr);
  const std::string rsvg = slurp(dir / "r.svg");
  auto polylines = [](const std::string& svg) {
    std::size_t k = 0;
    for (auto p = svg.find("<polyline"); p != std::string::npos; p = svg.find("<polyline", p + 1))
      ++k;
    return k;
  };
  CHECK(polylines(esvg) == 2 * cs.size());  // faint raw values and the smoothed line
  CHECK(polylines(rsvg) == cs.size());
  CHECK_THAT(rsvg, Catch::Contains(">top-1 (%)</text>") && !Catch::Contains(">loss</text>"));
  CHECK_THROWS_AS(encoder::write_curves_csv((dir / "no/such/dir/c.csv").string(), cs),
                  encoder::error);
}

TEST_CASE("loss_fell needs a clear drop, not noise", "[encoder][app]") {
  std::vector<double> falling, flat, noisy;
  encoder::rng g(9);
  for (int i = 0; i < 40; ++i) {
    falling.push_back(5.0 - 0.05 * i + 0.05 * g.normal());
    flat.push_back(5.0);
    noisy.push_back(5.0 + 0.3 * g.normal());
  }
  double first = 0, last = 0;
  CHECK(encoder::loss_fell(falling, &first, &last));
  CHECK(first > last);
  CHECK_FALSE(encoder::loss_fell(flat));
  CHECK_FALSE(encoder::loss_fell(noisy));
  CHECK_FALSE(encoder::loss_fell({5.0, 1.0}));  // too short to tell
  CHECK(encoder::chance_threshold(500) == Approx(0.1 + 3 * std::sqrt(0.09 / 500)));
}
