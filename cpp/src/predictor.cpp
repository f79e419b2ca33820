// res2net::Predictor: an exported model compiled by OpenVINO, fed by OpenCV preprocessing.

#include <sched.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <future>
#include <numeric>
#include <opencv2/core.hpp>
#include <openvino/openvino.hpp>

#include "res2net/predictor.hpp"

namespace res2net {
namespace {

// Threads for inference: RES2NET_THREADS, else the CPUs this process may run on (as Python's
// res2net.deploy.runtimes.cpu_threads).
int allowed_cpus() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return CPU_COUNT(&set);
  return 0;  // unknown
}

int cpu_threads(int requested) {
  if (requested > 0) return requested;
  if (const char* env = std::getenv("RES2NET_THREADS"); env && *env) return std::atoi(env);
  return allowed_cpus();  // 0: OpenVINO's own default
}

// OpenVINO's messages start with source locations; keep the whole text on one line, capped.
std::string one_line(const std::string& text) {
  std::string line;
  for (char c : text) {
    if (c != '\n') line += c;
    else if (!line.empty() && line.back() != ' ') line += ' ';
  }
  return line.size() > 600 ? line.substr(0, 600) + "..." : line;
}

// OpenVINO's CPU plugin computes in bf16 by default on CPUs with AMX/AVX512-BF16, so the
// precision is always set explicitly: f32 for fp32, bf16 only where the device has it.
ov::element::Type inference_type(ov::Core& core, const Options& options) {
  if (options.precision == "fp32") return ov::element::f32;
  if (options.precision != "bf16") {
    throw ModelError("unknown precision '" + options.precision + "'; choose fp32 or bf16");
  }
  const auto caps = core.get_property(options.device, ov::device::capabilities);
  if (std::find(caps.begin(), caps.end(), ov::device::capability::BF16) == caps.end()) {
    throw ModelError("precision bf16: OpenVINO's " + options.device +
                     " device has no bf16 support on this machine (it needs AVX512-BF16 or "
                     "AMX); use fp32");
  }
  return ov::element::bf16;
}

}  // namespace

struct Predictor::Impl {
  ModelInfo info;
  Options options;
  ov::Core core;
  ov::CompiledModel compiled;
  ov::InferRequest request;

  using Item = std::pair<std::string, std::vector<float>>;  // (error or "", tensor)

  std::vector<Item> prepare(const std::vector<std::string>& paths, std::size_t start) const {
    std::vector<Item> items;
    const std::size_t end = std::min(paths.size(), start + options.batch_size);
    for (std::size_t i = start; i < end; ++i) {
      try {
        items.emplace_back("", preprocess_image(paths[i], info.preprocess));
      } catch (const ImageError& exc) {
        items.emplace_back(exc.what(), std::vector<float>());
      } catch (const cv::Exception& exc) {
        items.emplace_back(paths[i] + ": OpenCV cannot process it (" + exc.err + ")",
                           std::vector<float>());
      }
    }
    return items;
  }
};

Predictor::Predictor(const std::string& model_path, const Options& options)
    : impl_(std::make_unique<Impl>()) {
  if (options.topk < 1 || options.batch_size < 1) {
    throw std::invalid_argument("topk and batch_size must be >= 1");
  }
  Impl& s = *impl_;
  s.info = read_model_info(model_path);
  s.options = options;
  s.options.topk = std::min(options.topk, s.info.num_classes);
  if (s.info.preprocess.style != "paddle") {
    throw ModelError(model_path + ": preprocessing style '" + s.info.preprocess.style +
                     "' (PIL's antialiased resize) is not implemented in res2net-cpp; use the "
                     "Python predictor for this model");
  }
  if (s.options.precision.empty()) {
    s.options.precision = s.info.precision == "bf16" ? "bf16" : "fp32";
  }
  const ov::element::Type precision = inference_type(s.core, s.options);
  ov::AnyMap config{ov::hint::performance_mode(ov::hint::PerformanceMode::LATENCY),
                    ov::hint::inference_precision(precision)};
  if (const int threads = cpu_threads(options.threads); threads > 0) {
    config.emplace(ov::inference_num_threads(threads));
    // Fewer threads than cores: no pinning, or every such process pins to the same first
    // cores (as res2net.deploy.runtimes.openvino_config, where the measurement is given).
    if (threads < allowed_cpus()) config.emplace(ov::hint::enable_cpu_pinning(false));
  }
  try {
    s.compiled = s.core.compile_model(s.core.read_model(model_path), options.device, config);
  } catch (const ov::Exception& exc) {
    throw ModelError(model_path + ": openvino cannot load this " + s.info.format + " file (" +
                     one_line(exc.what()) + "); export it again");
  }
  s.request = s.compiled.create_infer_request();
}

Predictor::~Predictor() = default;
Predictor::Predictor(Predictor&&) noexcept = default;
Predictor& Predictor::operator=(Predictor&&) noexcept = default;

const ModelInfo& Predictor::info() const { return impl_->info; }

const Options& Predictor::options() const { return impl_->options; }

std::string Predictor::inference_precision() const {
  return impl_->compiled.get_property(ov::hint::inference_precision).get_type_name();
}

std::vector<float> Predictor::infer(const std::vector<float>& batch, std::size_t n) {
  const std::size_t side = impl_->info.preprocess.crop;
  if (batch.size() != n * 3 * side * side) {
    throw std::invalid_argument("infer: batch holds " + std::to_string(batch.size()) +
                                " floats, not n x 3 x " + std::to_string(side) + " x " +
                                std::to_string(side));
  }
  // The request reads the caller's memory directly (no copy).
  ov::Tensor input(ov::element::f32, ov::Shape{n, 3, side, side}, const_cast<float*>(batch.data()));
  impl_->request.set_input_tensor(input);
  impl_->request.infer();
  const ov::Tensor output = impl_->request.get_output_tensor();
  if (output.get_element_type() != ov::element::f32) {
    throw ModelError(impl_->info.path + ": the model's output is " +
                     output.get_element_type().get_type_name() + ", expected f32");
  }
  const float* data = output.data<const float>();
  return std::vector<float>(data, data + output.get_size());
}

void topk(const float* row, int num_classes, int k, bool already_probabilities,
          std::vector<int>& ids, std::vector<double>& scores) {
  std::vector<double> probs(row, row + num_classes);
  if (!already_probabilities) {
    // Softmax in double after subtracting the row's maximum (Python: softmax_topk).
    const double top = *std::max_element(probs.begin(), probs.end());
    double sum = 0.0;
    for (double& p : probs) sum += (p = std::exp(p - top));
    for (double& p : probs) p /= sum;
  }
  std::vector<int> order(num_classes);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return probs[a] > probs[b]; });
  ids.assign(order.begin(), order.begin() + k);
  scores.clear();
  for (int id : ids) scores.push_back(probs[id]);
}

std::vector<Prediction> Predictor::predict(const std::vector<std::string>& paths) {
  Impl& s = *impl_;
  std::vector<Prediction> results;
  const std::size_t step = s.options.batch_size;
  auto next = std::async(std::launch::async, [&] { return s.prepare(paths, 0); });
  for (std::size_t start = 0; start < paths.size(); start += step) {
    std::vector<Impl::Item> items = next.get();
    if (start + step < paths.size()) {
      // Decode the next batch while the model runs on this one.
      next = std::async(std::launch::async, [&, start] { return s.prepare(paths, start + step); });
    }
    std::vector<float> batch;
    std::vector<std::size_t> good;
    for (std::size_t i = 0; i < items.size(); ++i) {
      Prediction p;
      p.source = paths[start + i];
      if (!items[i].first.empty()) p.error = items[i].first;
      else good.push_back(i);
      results.push_back(std::move(p));
      batch.insert(batch.end(), items[i].second.begin(), items[i].second.end());
    }
    if (good.empty()) continue;
    const std::vector<float> outputs = infer(batch, good.size());
    const int classes = static_cast<int>(outputs.size() / good.size());
    for (std::size_t row = 0; row < good.size(); ++row) {
      Prediction& p = results[start + good[row]];
      topk(outputs.data() + row * classes, classes, std::min(s.options.topk, classes),
           s.info.output == "probabilities", p.class_ids, p.scores);
      for (int id : p.class_ids) {
        if (id < static_cast<int>(s.info.labels.size())) p.labels.push_back(s.info.labels[id]);
      }
    }
  }
  return results;
}

}  // namespace res2net
