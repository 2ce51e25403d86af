// libFuzzer target: arbitrary bytes through the layer open/parse path.
#include <cstddef>
#include <cstdint>

#include "snapshot/disk/format.hpp"
#include "snapshot/disk/inspect.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Raw header slots and log blocks, then the whole file path.
  (void)cairn::disk::parse_header(std::span(data, size));
  std::vector<cairn::disk::LogRecord> recs;
  (void)cairn::disk::parse_log_block(std::span(data, size), 1, 0, &recs);
  if (size <= (16u << 20)) (void)cairn::disk::validate_layer_image(std::span(data, size));
  return 0;
}
