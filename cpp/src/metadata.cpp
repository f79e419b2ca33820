// Reading and checking the metadata JSON that `res2net export` writes beside a model
// (res2net/deploy/export.py): same refusals as Python's read_metadata.

#include <openssl/evp.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "res2net/predictor.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace res2net {
namespace {

// The export formats this program reads -> their model file suffix (as in
// res2net.deploy.engines.FORMAT_SPECS); the others run in ExecuTorch or PyTorch.
const std::map<std::string, std::string> kReadFormats = {{"onnx", ".onnx"}, {"openvino", ".xml"}};

std::string sha256_hex(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ModelError(path.string() + ": cannot read");
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
  std::vector<char> block(1 << 20);
  while (in) {
    in.read(block.data(), static_cast<std::streamsize>(block.size()));
    EVP_DigestUpdate(ctx.get(), block.data(), static_cast<std::size_t>(in.gcount()));
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(ctx.get(), digest, &length);
  std::ostringstream hex;
  static const char* kDigits = "0123456789abcdef";
  for (unsigned int i = 0; i < length; ++i) hex << kDigits[digest[i] >> 4] << kDigits[digest[i] & 15];
  return hex.str();
}

// The files that make up one export: OpenVINO keeps its weights in a .bin beside the .xml.
std::vector<fs::path> files_of(const fs::path& path) {
  if (path.extension() == ".xml") return {path, fs::path(path).replace_extension(".bin")};
  return {path};
}

Preprocess read_preprocess(const json& pre) {
  Preprocess cfg;
  if (pre.is_null()) return cfg;  // exported without one: PaddleClas's default
  cfg.resize_short = pre.value("resize_short", cfg.resize_short);
  cfg.crop = pre.value("crop", cfg.crop);
  cfg.interpolation = pre.value("interpolation", cfg.interpolation);
  cfg.style = pre.value("style", cfg.style);
  for (int c = 0; c < 3; ++c) {
    // Python writes float64; NormalizeImage rounds them to float32 before use, so do we.
    cfg.mean[c] = static_cast<float>(pre.at("mean").at(c).get<double>());
    cfg.std[c] = static_cast<float>(pre.at("std").at(c).get<double>());
  }
  return cfg;
}

void check_files(const fs::path& path, const json& files, const std::string& fmt,
                 const fs::path& meta_file) {
  for (const fs::path& part : files_of(path)) {
    if (!fs::is_regular_file(part)) {
      throw ModelError(part.string() + ": missing (part of the " + fmt + " export " +
                       path.filename().string() + ")");
    }
    const std::string name = part.filename().string();
    if (!files.contains(name) || !files[name].is_string() ||
        files[name].get<std::string>() != sha256_hex(part)) {
      throw ModelError(part.string() + ": does not match its metadata " +
                       meta_file.filename().string() +
                       " (SHA-256 differs): the file was modified, truncated or comes from "
                       "another export; export again");
    }
  }
}

json parse_metadata(const fs::path& meta_file) {
  std::ifstream in(meta_file);
  try {
    json meta = json::parse(in);
    if (!meta.at("files").is_object() || !meta.at("format").is_string()) {
      throw json::type_error::create(302, "files must be an object, format a string", nullptr);
    }
    return meta;
  } catch (const json::exception& exc) {
    throw ModelError(meta_file.string() + ": not valid export metadata (" + exc.what() + ")");
  }
}

}  // namespace

ModelInfo read_model_info(const std::string& model_path) {
  const fs::path path(model_path);
  const fs::path meta_file = path.parent_path() / (path.filename().string() + ".json");
  if (!fs::is_regular_file(path)) throw ModelError(model_path + ": no such model file");
  if (!fs::is_regular_file(meta_file)) {
    throw ModelError(model_path + ": its metadata " + meta_file.filename().string() +
                     " is missing; export with `res2net export`, which writes both");
  }
  const json meta = parse_metadata(meta_file);
  const std::string fmt = meta["format"].get<std::string>();
  if (kReadFormats.find(fmt) == kReadFormats.end()) {
    // Say what this program reads, not that the file is the wrong one: a .pte beside its own
    // metadata is a good export, only one for another runtime (ExecuTorch, PyTorch).
    throw ModelError(model_path + ": a '" + fmt + "' export; res2net-cpp reads OpenVINO IR (.xml) "
                     "and ONNX (.onnx) exports only: export with --format openvino or onnx, or "
                     "run this file with `res2net predict --model " + model_path + "`");
  }
  if (kReadFormats.at(fmt) != path.extension().string()) {
    throw ModelError(model_path + ": metadata " + meta_file.filename().string() +
                     " describes a '" + fmt + "' export, not a " + path.extension().string() +
                     " file");
  }
  check_files(path, meta["files"], fmt, meta_file);
  ModelInfo info;
  try {
    info.path = model_path;
    info.format = fmt;
    info.name = meta.value("model", std::string());
    info.precision = meta.value("precision", std::string("fp32"));
    info.output = meta.value("output", std::string("logits"));
    info.num_classes = meta.at("num_classes").get<int>();
    info.preprocess = read_preprocess(meta.value("preprocess", json()));
    if (meta.contains("labels") && !meta["labels"].is_null()) {
      info.labels = meta["labels"].get<std::vector<std::string>>();
    }
  } catch (const json::exception& exc) {
    throw ModelError(meta_file.string() + ": not valid export metadata (" + exc.what() + ")");
  }
  return info;
}

}  // namespace res2net
