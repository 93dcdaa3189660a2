// The ten-line tour: the symmetric CLIP loss and its gradients on Eigen matrices.
#include <cmath>
#include <iostream>

#include <contrastive/contrastive.hpp>

int main() {
  using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const Eigen::Index n = 8, d = 16;
  Mat img = Mat::Random(n, d), txt = img + 0.3f * Mat::Random(n, d);  // paired rows
  contrastive::l2_normalize(img, img);                                // in place
  contrastive::l2_normalize(txt, txt);
  Mat g_img(n, d), g_txt(n, d);
  contrastive::info_nce_options opt;  // symmetric (CLIP), temperature 0.07
  contrastive::temperature_gradient dtemp;
  const float loss = contrastive::info_nce_forward_backward(img, txt, g_img, g_txt, opt, &dtemp);
  std::cout << "CLIP loss " << loss << " (chance level log N = " << std::log(float(n)) << ")\n"
            << "|dL/dimg| " << g_img.norm() << ", |dL/dtxt| " << g_txt.norm() << ", dL/dlog(1/tau) "
            << dtemp.log_scale << "\n";
  return std::isfinite(loss) && loss < std::log(float(n)) ? 0 : 1;
}
