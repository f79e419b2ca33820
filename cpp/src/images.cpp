// Decoding and PaddleClas's eval preprocessing, with OpenCV as PaddleClas's own predictors do
// (deploy/python/preprocess.py and deploy/cpp/src/preprocess_op.cpp): cv::imread
// (IMREAD_COLOR), BGR->RGB, ResizeImage (short side, INTER_LINEAR), CropImage (center),
// NormalizeImage (x * 1/255 - mean) / std in float32, ToCHWImage.

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <set>

#include "res2net/predictor.hpp"

namespace fs = std::filesystem;

namespace res2net {
namespace {

// Suffixes picked up when a folder is walked (res2net.data.images.IMAGE_SUFFIXES).
const std::set<std::string> kImageSuffixes = {".jpg",  ".jpeg", ".png", ".bmp", ".gif",
                                              ".tif",  ".tiff", ".webp", ".ppm", ".pgm"};

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

std::vector<unsigned char> read_bytes(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) throw ImageError(path + ": is a folder, not an image file");
  if (!fs::exists(path, ec)) throw ImageError(path + ": no such file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ImageError(path + ": cannot read (permission denied or not a regular file)");
  std::vector<unsigned char> data((std::istreambuf_iterator<char>(in)),
                                  std::istreambuf_iterator<char>());
  if (data.empty()) throw ImageError(path + ": empty file (0 bytes); nothing to decode");
  return data;
}

// Whether a JPEG stops before its end-of-image marker. libjpeg decodes such a file with a
// warning, filling the missing part with gray, and OpenCV returns that image; Pillow (the
// Python predictor) refuses it, and so do we. Inside entropy-coded data every 0xFF byte is
// followed by 0x00 or a restart marker, so the last start-of-scan (FF DA) in the file belongs
// to the image's last scan, and a complete file has an EOI (FF D9) after it.
bool truncated_jpeg(const std::vector<unsigned char>& data) {
  if (data.size() < 4 || data[0] != 0xFF || data[1] != 0xD8) return false;
  std::size_t last_scan = 0;
  for (std::size_t i = 0; i + 1 < data.size(); ++i) {
    if (data[i] == 0xFF && data[i + 1] == 0xDA) last_scan = i;
  }
  for (std::size_t i = last_scan; i + 1 < data.size(); ++i) {
    if (data[i] == 0xFF && data[i + 1] == 0xD9) return false;
  }
  return true;
}

// The decoded image, 8-bit BGR, as cv::imread(path, IMREAD_COLOR) gives it: gray replicated,
// alpha dropped, 16-bit reduced to its high byte, EXIF orientation applied.
cv::Mat decode(const std::string& path) {
  const std::vector<unsigned char> data = read_bytes(path);
  if (truncated_jpeg(data)) {
    throw ImageError(path + ": truncated image data (the JPEG ends before its end-of-image "
                     "marker)");
  }
  cv::Mat image;
  try {
    image = cv::imdecode(data, cv::IMREAD_COLOR);
  } catch (const cv::Exception& exc) {
    throw ImageError(path + ": corrupt image data (" + exc.err + ")");
  }
  if (image.empty()) {
    throw ImageError(path + ": not an image, or corrupt image data (OpenCV cannot decode its " +
                     std::to_string(data.size()) + " bytes)");
  }
  return image;
}

}  // namespace

std::vector<float> preprocess_image(const std::string& path, const Preprocess& cfg) {
  if (cfg.style != "paddle") {
    throw ModelError("preprocessing style '" + cfg.style +
                     "' (PIL's antialiased resize) is not implemented in res2net-cpp; it runs "
                     "PaddleClas-style exports: use the Python predictor for this model");
  }
  if (cfg.interpolation != "bilinear") {
    throw ModelError("paddle-style preprocessing is bilinear only, not '" + cfg.interpolation +
                     "'");
  }
  const cv::Mat image = decode(path);
  // ResizeImage: both sides scaled by resize_short / short side, rounded half to even (as
  // Python's round, which PaddleClas uses; nearbyint in the default rounding mode).
  const double percent = static_cast<double>(cfg.resize_short) / std::min(image.cols, image.rows);
  const int width = static_cast<int>(std::nearbyint(image.cols * percent));
  const int height = static_cast<int>(std::nearbyint(image.rows * percent));
  if (std::min(width, height) < cfg.crop) {
    throw ModelError("resize_short=" + std::to_string(cfg.resize_short) +
                     " is smaller than crop=" + std::to_string(cfg.crop));
  }
  cv::Mat resized;
  cv::resize(image, resized, cv::Size(width, height), 0, 0, cv::INTER_LINEAR);
  // CropImage: floor of half the excess on each axis.
  const int left = (width - cfg.crop) / 2;
  const int top = (height - cfg.crop) / 2;
  const int side = cfg.crop;
  const std::size_t plane = static_cast<std::size_t>(side) * side;
  std::vector<float> chw(3 * plane);
  const float scale = static_cast<float>(1.0 / 255.0);
  for (int y = 0; y < side; ++y) {
    const cv::Vec3b* row = resized.ptr<cv::Vec3b>(top + y) + left;
    for (int x = 0; x < side; ++x) {
      for (int c = 0; c < 3; ++c) {
        // Channel c of RGB is channel 2 - c of OpenCV's BGR.
        const float value = static_cast<float>(row[x][2 - c]) * scale;
        chw[c * plane + static_cast<std::size_t>(y) * side + x] = (value - cfg.mean[c]) / cfg.std[c];
      }
    }
  }
  return chw;
}

std::vector<std::string> collect_images(const std::vector<std::string>& inputs) {
  std::vector<std::string> found;
  for (const std::string& input : inputs) {
    std::error_code ec;
    if (!fs::is_directory(input, ec)) {
      found.push_back(input);
      continue;
    }
    std::vector<std::string> inside;
    for (const auto& entry : fs::recursive_directory_iterator(input, ec)) {
      if (entry.is_regular_file() && kImageSuffixes.count(lower(entry.path().extension()))) {
        inside.push_back(entry.path().string());
      }
    }
    std::sort(inside.begin(), inside.end());
    found.insert(found.end(), inside.begin(), inside.end());
  }
  return found;
}

}  // namespace res2net
