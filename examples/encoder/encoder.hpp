#ifndef CONTRASTIVE_EXAMPLES_ENCODER_ENCODER_HPP
#define CONTRASTIVE_EXAMPLES_ENCODER_ENCODER_HPP

// The reference encoder stack of the examples, header-only like the library (namespace encoder):
//   app.hpp            helpers of the training programs (output dir, exit codes, checks)
//   common.hpp         row-major Eigen matrices, encoder::error, Philox-based rng, permutations
//   layers.hpp         linear, relu, gelu, layer_norm, l2_norm, sequential, MLP encoder and head
//   optim.hpp          AdamW (decoupled weight decay), cosine schedule with warm-up
//   checkpoint.hpp     binary save/load with magic, version, sizes and checksum
//   fashion_mnist.hpp  the Debian dataset-fashion-mnist IDX files through zlib
//   augment.hpp        seeded crop, shift, flip, cutout, noise
//   probe.hpp          softmax cross-entropy and the linear probe
//   progress.hpp       the training progress bar
//   report.hpp         curves as CSV and SVG, text tables
// Not included here: two_tower.hpp (train_two_tower's objectives, built on the library's
// modality-structure losses).

#include "app.hpp"
#include "augment.hpp"
#include "checkpoint.hpp"
#include "common.hpp"
#include "fashion_mnist.hpp"
#include "layers.hpp"
#include "optim.hpp"
#include "probe.hpp"
#include "progress.hpp"
#include "report.hpp"

#endif  // CONTRASTIVE_EXAMPLES_ENCODER_ENCODER_HPP
