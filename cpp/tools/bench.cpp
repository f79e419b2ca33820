// res2net-cpp bench: model latency per batch size as `res2net bench` measures it (random
// input, untimed warm-up calls, then the median of timed calls), and optionally end-to-end
// images/s of Predictor::predict on real files.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "res2net/predictor.hpp"

using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

double elapsed_ms(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const std::size_t n = values.size();
  return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

// This process's peak resident memory (VmHWM, Linux) in MiB; 0 where unknown.
double peak_rss_mib() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  }
  return 0.0;
}

std::vector<int> parse_sizes(const std::string& text) {
  std::vector<int> sizes;
  std::stringstream in(text);
  for (std::string part; std::getline(in, part, ',');) {
    try {
      if (!part.empty()) sizes.push_back(std::stoi(part));
    } catch (const std::exception&) {
      throw std::invalid_argument("--batch-sizes: '" + part + "' is not an integer");
    }
    if (!sizes.empty() && sizes.back() < 1) throw std::invalid_argument("--batch-sizes: >= 1");
  }
  if (sizes.empty()) throw std::invalid_argument("--batch-sizes: give at least one size");
  return sizes;
}

std::string ms(double value) {
  char text[32];
  std::snprintf(text, sizeof(text), value >= 10 ? "%.1f" : "%.2f", value);
  return text;
}

}  // namespace

int run_bench(const std::vector<std::string>& images, const std::string& model,
              const res2net::Options& options, const std::string& sizes_text, int warmup,
              int iters, bool as_json) {
  const std::vector<int> sizes = parse_sizes(sizes_text);
  if (warmup < 0 || iters < 1) throw std::invalid_argument("--warmup >= 0 and --iters >= 1");
  const std::vector<std::string> files = res2net::collect_images(images);
  if (!images.empty() && files.empty()) throw std::invalid_argument("--images: no image files");
  json rows = json::array();
  double peak = 0;
  std::string name, precision;
  for (int batch : sizes) {
    res2net::Options opts = options;
    opts.batch_size = batch;
    res2net::Predictor predictor(model, opts);
    name = predictor.info().name.empty() ? model : predictor.info().name;
    precision = predictor.options().precision;
    const std::size_t side = predictor.info().preprocess.crop;
    std::vector<float> input(batch * 3 * side * side);
    std::mt19937 rng(0);
    std::normal_distribution<float> normal;
    for (float& v : input) v = normal(rng);
    for (int i = 0; i < warmup; ++i) predictor.infer(input, batch);
    std::vector<double> times;
    for (int i = 0; i < iters; ++i) {
      const auto start = Clock::now();
      predictor.infer(input, batch);
      times.push_back(elapsed_ms(start));
    }
    json row{{"batch", batch},
             {"median_ms", median(times)},
             {"best_ms", *std::min_element(times.begin(), times.end())},
             {"precision", precision},
             {"inference_precision", predictor.inference_precision()}};
    if (!files.empty()) {
      predictor.predict(files);  // warm-up: file cache, allocations
      const auto start = Clock::now();
      const auto results = predictor.predict(files);
      row["images_per_s"] = 1e3 * results.size() / elapsed_ms(start);
    }
    rows.push_back(row);
    peak = std::max(peak, peak_rss_mib());
  }
  if (as_json) {
    std::cout << json{{"model", name}, {"rows", rows}, {"peak_rss_mib", peak}}.dump(2) << "\n";
    return 0;
  }
  // The layout of `res2net bench`'s table: one line, a column per batch size.
  std::string head = "| Model | Engine | Precision |", rule = "|---|---|---|", cells;
  for (const auto& row : rows) {
    head += " bs=" + std::to_string(row["batch"].get<int>()) + " (ms) |";
    rule += "---|";
    cells += " " + ms(row["median_ms"].get<double>());
    if (row.contains("images_per_s")) {
      cells += " (" + ms(row["images_per_s"].get<double>()) + " img/s e2e)";
    }
    cells += " |";
  }
  std::cout << head << " Peak RSS (MiB) |\n" << rule << "---|\n"
            << "| " << name << " | openvino (C++) | " << precision << " |" << cells
            << " " << static_cast<int>(peak + 0.5) << " |\n";
  return 0;
}
