#ifndef CONTRASTIVE_EXAMPLES_ENCODER_AUGMENT_HPP
#define CONTRASTIVE_EXAMPLES_ENCODER_AUGMENT_HPP

// Seeded image augmentations on h x w greyscale images stored as rows of floats in [0, 1]:
// random resized crop, random shift (a crop of the zero-padded image), horizontal flip, cutout
// and Gaussian noise. augment_batch draws each image's randomness from its own Philox stream
// (seed, sample index, epoch, view), so a sample gets the same views in an epoch whatever the
// batch it lands in.

#include <algorithm>
#include <cmath>
#include <vector>

#include "common.hpp"

namespace encoder {

struct augment_options {
  double crop_scale_min = 0.6;  // resized crop keeps a square of area fraction in [min, 1]; 1 = off
  int max_shift = 2;            // shift by up to this many pixels each way (zero fill); 0 = off
  double flip_prob = 0.5;       // horizontal flip
  double cutout_prob = 0.5;     // zero a square of cutout_size (clipped at the border)
  int cutout_size = 8;
  double noise_std = 0.05;  // additive Gaussian noise, then clamp to [0, 1]
};

/// out(y, x) = in(y - dy, x - dx), zero outside.
inline void shift_image(const float* in, float* out, int h, int w, int dy, int dx) {
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const int sy = y - dy, sx = x - dx;
      out[y * w + x] = (sy >= 0 && sy < h && sx >= 0 && sx < w) ? in[sy * w + sx] : 0.0f;
    }
}

/// out(y, x) = in(y, w - 1 - x).
inline void hflip_image(const float* in, float* out, int h, int w) {
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) out[y * w + x] = in[y * w + (w - 1 - x)];
}

/// The crop [top, top + ch) x [left, left + cw) of `in`, resized to h x w (bilinear, pixel
/// centres aligned, edge pixels clamped).
inline void resized_crop_image(const float* in, float* out, int h, int w, double top, double left,
                               double ch, double cw) {
  for (int y = 0; y < h; ++y) {
    const double fy = std::min(std::max(top + (y + 0.5) * ch / h - 0.5, 0.0), double(h - 1));
    const int y0 = static_cast<int>(fy);
    const int y1 = std::min(y0 + 1, h - 1);
    const double ay = fy - y0;
    for (int x = 0; x < w; ++x) {
      const double fx = std::min(std::max(left + (x + 0.5) * cw / w - 0.5, 0.0), double(w - 1));
      const int x0 = static_cast<int>(fx);
      const int x1 = std::min(x0 + 1, w - 1);
      const double ax = fx - x0;
      const double v = (1 - ay) * ((1 - ax) * in[y0 * w + x0] + ax * in[y0 * w + x1]) +
                       ay * ((1 - ax) * in[y1 * w + x0] + ax * in[y1 * w + x1]);
      out[y * w + x] = static_cast<float>(v);
    }
  }
}

/// Zeroes the size x size square with top-left corner (y0, x0), clipped to the image.
inline void cutout_image(float* img, int h, int w, int y0, int x0, int size) {
  for (int y = std::max(y0, 0); y < std::min(y0 + size, h); ++y)
    for (int x = std::max(x0, 0); x < std::min(x0 + size, w); ++x) img[y * w + x] = 0.0f;
}

/// One random view of `in` (h x w) into `out`, all draws from `r` in a fixed order.
inline void augment_image(const float* in, float* out, int h, int w, const augment_options& o,
                          rng& r) {
  std::vector<float> a(in, in + h * w), b(static_cast<std::size_t>(h * w));
  // Resized crop: a square-ish window of area fraction s in [min, 1].
  const double s = o.crop_scale_min + (1 - o.crop_scale_min) * r.uniform();
  const double ch = std::sqrt(s) * h, cw = std::sqrt(s) * w;
  const double top = (h - ch) * r.uniform(), left = (w - cw) * r.uniform();
  if (o.crop_scale_min < 1) {
    resized_crop_image(a.data(), b.data(), h, w, top, left, ch, cw);
    a.swap(b);
  }
  const int dy = o.max_shift > 0 ? r.between(-o.max_shift, o.max_shift) : 0;
  const int dx = o.max_shift > 0 ? r.between(-o.max_shift, o.max_shift) : 0;
  if (dy != 0 || dx != 0) {
    shift_image(a.data(), b.data(), h, w, dy, dx);
    a.swap(b);
  }
  if (r.bernoulli(o.flip_prob)) {
    hflip_image(a.data(), b.data(), h, w);
    a.swap(b);
  }
  const bool cut = r.bernoulli(o.cutout_prob);
  const int cy = r.between(-o.cutout_size / 2, h - 1 - o.cutout_size / 2);
  const int cx = r.between(-o.cutout_size / 2, w - 1 - o.cutout_size / 2);
  if (cut && o.cutout_size > 0) cutout_image(a.data(), h, w, cy, cx, o.cutout_size);
  for (int k = 0; k < h * w; ++k) {
    float v = a[static_cast<std::size_t>(k)];
    if (o.noise_std > 0) v += static_cast<float>(o.noise_std * r.normal());
    out[k] = std::min(std::max(v, 0.0f), 1.0f);
  }
}

/// Augmented views of the rows of `rows` (each h x w); row i's randomness is the Philox stream
/// (seed, ids[i], epoch, stream), ids being dataset indices.
inline matrix<float> augment_each(const matrix<float>& rows, const std::vector<index_t>& ids, int h,
                                  int w, const augment_options& o, std::uint64_t seed,
                                  std::uint32_t epoch, std::uint32_t stream) {
  if (rows.cols() != static_cast<index_t>(h) * w)
    throw error("augment: images have " + std::to_string(rows.cols()) + " columns, expected " +
                std::to_string(h) + "x" + std::to_string(w));
  if (rows.rows() != static_cast<index_t>(ids.size()))
    throw error("augment: " + std::to_string(rows.rows()) + " images but " +
                std::to_string(ids.size()) + " ids");
  matrix<float> out(rows.rows(), rows.cols());
  for (index_t i = 0; i < rows.rows(); ++i) {
    rng r(seed, static_cast<std::uint64_t>(ids[static_cast<std::size_t>(i)]), epoch, stream);
    augment_image(rows.row(i).data(), out.row(i).data(), h, w, o, r);
  }
  return out;
}

/// Augmented views of rows `idx` of `images`; row i's randomness is the Philox stream
/// (seed, idx[i], epoch, stream).
inline matrix<float> augment_batch(const matrix<float>& images, const std::vector<index_t>& idx,
                                   int h, int w, const augment_options& o, std::uint64_t seed,
                                   std::uint32_t epoch, std::uint32_t stream) {
  if (images.cols() != static_cast<index_t>(h) * w)
    throw error("augment: images have " + std::to_string(images.cols()) + " columns, expected " +
                std::to_string(h) + "x" + std::to_string(w));
  return augment_each(gather_rows(images, idx), idx, h, w, o, seed, epoch, stream);
}

}  // namespace encoder

#endif  // CONTRASTIVE_EXAMPLES_ENCODER_AUGMENT_HPP
