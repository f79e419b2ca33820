// res2net-cpp: classify images with an exported Res2Net, time it, or dump its preprocessing.
// Output and exit codes follow `res2net predict`: 0 all classified, 1 some inputs failed,
// 2 usage error or a model that cannot be loaded.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <opencv2/core/utils/logger.hpp>
#include <random>
#include <set>
#include <sstream>

#include "res2net/predictor.hpp"

using json = nlohmann::ordered_json;

namespace {

const char* kUsage =
    "usage: res2net-cpp COMMAND [options]\n"
    "\n"
    "Res2Net inference on a model written by `res2net export` (OpenVINO IR .xml or ONNX),\n"
    "with the preprocessing and labels of the metadata JSON beside it.\n"
    "\n"
    "commands:\n"
    "  predict --model FILE IMAGE_OR_FOLDER... [--topk 5] [--batch-size 8]\n"
    "          [--precision fp32|bf16] [--device CPU] [--json]\n"
    "      classify images (folders are walked recursively); prints each image's top-k\n"
    "      as `res2net predict` does. Exit code: 0 all classified, 1 some images failed,\n"
    "      2 usage error.\n"
    "  bench --model FILE [--batch-sizes 1,4,8] [--warmup 10] [--iters 50]\n"
    "        [--precision fp32|bf16] [--images IMAGE_OR_FOLDER...] [--json]\n"
    "      median model latency per batch size on a random input (Markdown table); with\n"
    "      --images also end-to-end images/s (decode + preprocess + model + top-k).\n"
    "  preprocess --model FILE IMAGE... --output FILE\n"
    "      write the preprocessed inputs as raw float32, N x 3 x crop x crop (for checks).\n"
    "\n"
    "options:\n"
    "  -h, --help     show this help\n"
    "  --version      show the version\n"
    "  --precision    default: the export's (bf16 for a bf16 export, else fp32)\n";

// A command line that cannot be run: printed as "res2net-cpp CMD: error: ...", exit 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Args {
  std::string command;
  std::map<std::string, std::string> options;
  std::set<std::string> flags;
  std::vector<std::string> positional;
  std::vector<std::string> images;  // bench --images takes several values

  std::string get(const std::string& name, const std::string& fallback) const {
    auto it = options.find(name);
    return it == options.end() ? fallback : it->second;
  }
  int integer(const std::string& name, int fallback) const {
    const std::string text = get(name, std::to_string(fallback));
    try {
      std::size_t used = 0;
      const int value = std::stoi(text, &used);
      if (used == text.size()) return value;
    } catch (const std::exception&) {
    }
    throw UsageError("--" + name + ": expected an integer, got '" + text + "'");
  }
};

const std::map<std::string, std::set<std::string>> kValueOptions = {
    {"predict", {"model", "topk", "batch-size", "precision", "device", "threads"}},
    {"bench", {"model", "batch-sizes", "warmup", "iters", "precision", "device", "threads",
               "batch-size"}},
    {"preprocess", {"model", "output"}},
};
const std::map<std::string, std::set<std::string>> kFlags = {
    {"predict", {"json"}}, {"bench", {"json"}}, {"preprocess", {}}};

Args parse(int argc, char** argv) {
  Args args;
  args.command = argv[1];
  const auto& values = kValueOptions.at(args.command);
  const auto& flags = kFlags.at(args.command);
  bool in_images = false;
  for (int i = 2; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--", 0) != 0 || arg == "--") {
      (in_images ? args.images : args.positional).push_back(arg);
      continue;
    }
    in_images = false;
    std::string name = arg.substr(2), value;
    const auto eq = name.find('=');
    const bool inline_value = eq != std::string::npos;
    if (inline_value) value = name.substr(eq + 1), name = name.substr(0, eq);
    if (flags.count(name)) {
      args.flags.insert(name);
    } else if (args.command == "bench" && name == "images") {
      in_images = true;
    } else if (values.count(name)) {
      if (!inline_value) {
        if (i + 1 >= argc) throw UsageError("argument --" + name + ": expected one argument");
        value = argv[++i];
      }
      args.options[name] = value;
    } else {
      throw UsageError("unrecognized argument: " + arg + " (see res2net-cpp --help)");
    }
  }
  if (!args.options.count("model")) throw UsageError("the following arguments are required: --model");
  return args;
}

res2net::Options options_from(const Args& args) {
  res2net::Options options;
  options.precision = args.get("precision", "");  // "": the export's own
  if (!options.precision.empty() && options.precision != "fp32" && options.precision != "bf16") {
    throw UsageError("argument --precision: invalid choice: '" + options.precision +
                     "' (choose from 'fp32', 'bf16')");
  }
  options.device = args.get("device", "CPU");
  options.topk = args.integer("topk", 5);
  options.batch_size = args.integer("batch-size", 8);
  options.threads = args.integer("threads", 0);
  if (options.topk < 1 || options.batch_size < 1) {
    throw UsageError("--topk and --batch-size must be >= 1");
  }
  return options;
}

void print_text(const std::vector<res2net::Prediction>& predictions) {
  // One header line per image, then one "score  id  name" line per class (res2net predict).
  for (const auto& p : predictions) {
    if (!p.ok()) continue;
    std::cout << p.source << "\n";
    for (std::size_t i = 0; i < p.class_ids.size(); ++i) {
      char line[64];
      std::snprintf(line, sizeof(line), "  %.4f  %4d", p.scores[i], p.class_ids[i]);
      std::cout << line;
      if (i < p.labels.size() && !p.labels[i].empty()) std::cout << "  " << p.labels[i];
      std::cout << "\n";
    }
  }
}

json to_json(const res2net::Prediction& p) {
  return json{{"source", p.source},
              {"class_ids", p.class_ids},
              {"scores", p.scores},
              {"labels", p.labels},
              {"error", p.error ? json(*p.error) : json(nullptr)}};
}

int run_predict(const Args& args) {
  if (args.positional.empty()) {
    throw UsageError("the following arguments are required: IMAGES_OR_FOLDERS");
  }
  const std::vector<std::string> files = res2net::collect_images(args.positional);
  if (files.empty()) {
    std::string names;
    for (const auto& p : args.positional) names += (names.empty() ? "" : ", ") + p;
    throw UsageError("no image files found in " + names);
  }
  res2net::Predictor predictor(args.get("model", ""), options_from(args));
  const auto predictions = predictor.predict(files);
  int failed = 0;
  for (const auto& p : predictions) {
    if (!p.ok()) ++failed, std::cerr << "failed: " << *p.error << "\n";
  }
  if (args.flags.count("json")) {
    json document{{"model", predictor.info().name},
                  {"weights", predictor.info().path},
                  {"predictions", json::array()}};
    for (const auto& p : predictions) document["predictions"].push_back(to_json(p));
    // Python's json.dump(indent=2) escapes non-ASCII characters; so do we.
    std::cout << document.dump(2, ' ', true) << std::endl;
  } else {
    print_text(predictions);
  }
  if (failed) {
    std::cerr << failed << " of " << predictions.size() << " images failed\n";
  }
  return failed ? 1 : 0;
}

int run_preprocess(const Args& args) {
  if (args.positional.empty()) throw UsageError("the following arguments are required: IMAGE");
  if (!args.options.count("output")) throw UsageError("the following arguments are required: --output");
  const res2net::ModelInfo info = res2net::read_model_info(args.get("model", ""));
  std::ofstream out(args.get("output", ""), std::ios::binary);
  if (!out) throw UsageError("--output " + args.get("output", "") + ": cannot write");
  for (const std::string& path : args.positional) {
    const std::vector<float> chw = res2net::preprocess_image(path, info.preprocess);
    out.write(reinterpret_cast<const char*>(chw.data()),
              static_cast<std::streamsize>(chw.size() * sizeof(float)));
  }
  return 0;
}

}  // namespace

int run_bench(const std::vector<std::string>& images, const std::string& model,
              const res2net::Options& options, const std::string& sizes, int warmup, int iters,
              bool as_json);

int main(int argc, char** argv) {
  cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_ERROR);
  if (argc < 2 || std::string(argv[1]) == "-h" || std::string(argv[1]) == "--help") {
    std::cout << kUsage;
    return argc < 2 ? 2 : 0;
  }
  const std::string command = argv[1];
  if (command == "--version") {
    std::cout << "res2net-cpp " << RES2NET_CPP_VERSION << "\n";
    return 0;
  }
  if (!kValueOptions.count(command)) {
    std::cerr << kUsage << "res2net-cpp: error: unknown command '" << command
              << "' (choose from predict, bench, preprocess)\n";
    return 2;
  }
  for (int i = 2; i < argc; ++i) {
    if (std::string(argv[i]) == "-h" || std::string(argv[i]) == "--help") {
      std::cout << kUsage;
      return 0;
    }
  }
  try {
    const Args args = parse(argc, argv);
    if (command == "predict") return run_predict(args);
    if (command == "preprocess") return run_preprocess(args);
    return run_bench(args.images, args.get("model", ""), options_from(args),
                     args.get("batch-sizes", "1,4,8"), args.integer("warmup", 10),
                     args.integer("iters", 50), args.flags.count("json") > 0);
  } catch (const UsageError& exc) {
    std::cerr << "usage: res2net-cpp " << command << " --model FILE ... (see --help)\n"
              << "res2net-cpp " << command << ": error: " << exc.what() << "\n";
    return 2;
  } catch (const std::exception& exc) {
    // Model, image (preprocess) and OpenVINO errors are written to be read by a person.
    std::cerr << "res2net-cpp " << command << ": error: " << exc.what() << "\n";
    return 2;
  }
}
