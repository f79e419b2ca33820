// res2net C++ inference: classify images with a model written by `res2net export`.
//
// The one public header. It needs only the C++17 standard library; OpenVINO, OpenCV and the
// JSON reader stay inside the library. Typical use:
//
//   res2net::Predictor predictor("exports/Res2Net50_vd_26w_4s.xml");
//   for (const auto& p : predictor.predict({"cat.jpg", "dog.png"})) {
//     if (p.ok()) std::cout << p.source << ": " << p.labels.at(0) << "\n";
//   }
//
// Numbers match the Python `res2net.deploy.predictor.Predictor`: the same decoding and
// preprocessing (PaddleClas's: cv::imread, BGR->RGB, short side with INTER_LINEAR, center
// crop, scale, mean/std, CHW), the same softmax and top-k ranking.
#pragma once

#include <array>
#include <cstddef>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace res2net {

// An exported model or its metadata is missing, corrupt or does not belong together, or asks
// for something this library cannot run. The message names the file and what to do.
class ModelError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// One input could not be decoded or preprocessed. The message starts with the input's name.
class ImageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The eval preprocessing stored in the export's metadata (Python: res2net.data.preprocess).
struct Preprocess {
  int resize_short = 256;
  int crop = 224;
  std::string interpolation = "bilinear";
  std::array<float, 3> mean{0.485f, 0.456f, 0.406f};
  std::array<float, 3> std{0.229f, 0.224f, 0.225f};
  std::string style = "paddle";  // "paddle" runs here; "timm" is refused with a ModelError
};

// What the metadata JSON beside an exported model says about it.
struct ModelInfo {
  std::string path;       // the model file (.xml or .onnx)
  std::string name;       // registered name, "" for a `res2net train` export
  std::string format;     // "openvino" or "onnx"
  std::string precision;  // "fp32", "bf16" or "int8": how it was exported
  std::string output;     // "logits" or "probabilities" (exported with --softmax)
  int num_classes = 0;
  Preprocess preprocess;
  std::vector<std::string> labels;  // index = class id; empty when the export has none
};

// The top-k classes of one input, or why it could not be classified (Python: Prediction).
struct Prediction {
  std::string source;
  std::vector<int> class_ids;
  std::vector<double> scores;  // softmax probabilities, highest first
  std::vector<std::string> labels;
  std::optional<std::string> error;  // set when the input failed
  bool ok() const { return !error.has_value(); }
};

struct Options {
  // "fp32", or "bf16" where the CPU has bf16 instructions; "": the export's own (its
  // metadata's "bf16", else fp32; INT8 files run their other operations in fp32), as
  // Python's Predictor runs a file.
  std::string precision;
  std::string device = "CPU";      // an OpenVINO device name
  int topk = 5;
  int batch_size = 8;
  int threads = 0;  // inference threads; 0: RES2NET_THREADS, else every CPU this process may use
};

// Read and check the metadata of an exported model, as Python's `load_exported` does: the
// metadata must exist beside the model (`<model file>.json`), describe a file of this suffix,
// and hold the SHA-256 of every model file (the .xml and its .bin). Throws ModelError.
ModelInfo read_model_info(const std::string& model_path);

// Decode one image file and preprocess it: float32, 3 x crop x crop (CHW, RGB). Throws
// ImageError (naming the file) for a missing, empty, non-image or corrupt file, and
// ModelError for a preprocessing this library does not run.
std::vector<float> preprocess_image(const std::string& path, const Preprocess& cfg);

// The files named, with folders walked recursively (sorted, image suffixes only), as
// `res2net predict` collects them. Paths that do not exist are kept, to be reported.
std::vector<std::string> collect_images(const std::vector<std::string>& inputs);

// Ids and softmax probabilities (computed in double) of the k best classes, highest first,
// ties to the lower id. With `already_probabilities` the row is ranked as it is.
void topk(const float* row, int num_classes, int k, bool already_probabilities,
          std::vector<int>& ids, std::vector<double>& scores);

class Predictor {
 public:
  // Loads and checks the export and compiles it for `options.device` (throws ModelError).
  explicit Predictor(const std::string& model_path, const Options& options = Options());
  ~Predictor();
  Predictor(Predictor&&) noexcept;
  Predictor& operator=(Predictor&&) noexcept;

  // One Prediction per input, in order; inputs that fail get `error` set, the rest are
  // classified. Decoding the next batch overlaps the model call on the current one.
  std::vector<Prediction> predict(const std::vector<std::string>& paths);

  // Model outputs (n x num_classes, row-major) of an already preprocessed n x 3 x crop x crop
  // batch.
  std::vector<float> infer(const std::vector<float>& batch, std::size_t n);

  const ModelInfo& info() const;
  // The options in force: `precision` resolved ("fp32" or "bf16"), `topk` capped.
  const Options& options() const;
  // The precision the compiled model computes in ("f32", "bf16", ...), as OpenVINO reports.
  std::string inference_precision() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace res2net
