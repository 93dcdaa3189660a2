// How to make your own tensor type usable with contrastive: specialise contrastive::tensor_traits
// with two static functions that describe your memory as a matrix_view (pointer, rows, columns,
// row stride, column stride; strides in elements). Nothing else is needed: every loss accepts
// any type for which contrastive::as_view works.
#include <cstddef>
#include <iostream>
#include <vector>

#include <cmath>

#include <contrastive/contrastive.hpp>

// A minimal user-side matrix: row-major floats in a std::vector.
struct my_matrix {
  std::vector<float> values;
  std::ptrdiff_t rows = 0;
  std::ptrdiff_t cols = 0;

  my_matrix(std::ptrdiff_t r, std::ptrdiff_t c)
      : values(static_cast<std::size_t>(r * c)), rows(r), cols(c) {}
  float& at(std::ptrdiff_t i, std::ptrdiff_t j) {
    return values[static_cast<std::size_t>(i * cols + j)];
  }
};

// The customisation point. view(T&) gives a writable view (used for outputs such as gradients),
// view(const T&) a read-only one (used for inputs).
template <>
struct contrastive::tensor_traits<my_matrix> {
  static contrastive::matrix_view<float> view(my_matrix& m) noexcept {
    return {m.values.data(), m.rows, m.cols, /*row_stride=*/m.cols, /*col_stride=*/1};
  }
  static contrastive::matrix_view<const float> view(const my_matrix& m) noexcept {
    return {m.values.data(), m.rows, m.cols, m.cols, 1};
  }
};

static_assert(contrastive::is_tensor_like<my_matrix>::value, "my_matrix is a tensor");
static_assert(contrastive::is_writable_tensor<my_matrix&>::value, "and can be written through");

int main() {
  my_matrix embeddings(4, 3);
  for (std::ptrdiff_t i = 0; i < embeddings.rows; ++i)
    for (std::ptrdiff_t j = 0; j < embeddings.cols; ++j)
      embeddings.at(i, j) = static_cast<float>(10 * i + j);

  const auto v = contrastive::as_view(embeddings);
  std::cout << "view: " << v.rows() << " x " << v.cols() << ", strides (" << v.row_stride() << ", "
            << v.col_stride() << ")\n";
  std::cout << "element (2, 1) = " << v(2, 1) << '\n';

  const bool view_ok = v.rows() == 4 && v.cols() == 3 && v(2, 1) == 21.0f;

  // Every loss now accepts my_matrix, for inputs and for gradient outputs alike.
  my_matrix other(4, 3), grad_a(4, 3), grad_b(4, 3);
  for (std::ptrdiff_t i = 0; i < other.rows; ++i)
    for (std::ptrdiff_t j = 0; j < other.cols; ++j)
      other.at(i, j) = embeddings.at(i, j) + (j == 0 ? 0.5f : 0.0f);
  contrastive::l2_normalize(embeddings, embeddings);
  contrastive::l2_normalize(other, other);
  contrastive::info_nce_options opt;
  opt.temperature = 0.5;
  const float loss = contrastive::info_nce_forward_backward(embeddings, other, grad_a, grad_b, opt);
  std::cout << "CLIP loss on my_matrix: " << loss << ", dL/da(0, 0) = " << grad_a.at(0, 0) << '\n';
  return view_ok && std::isfinite(loss) ? 0 : 1;
}
