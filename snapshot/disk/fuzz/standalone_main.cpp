// Driver for the fuzz target where libFuzzer is unavailable (g++, or clang
// older than 16, which cannot compile libstdc++'s std::expected): mutates a
// valid layer image (bit flips, byte stores, truncation, re-sealed header
// checksums) and feeds it to LLVMFuzzerTestOneInput under ASan/UBSan until
// -max_total_time=N seconds pass. Accepts libFuzzer's flag spelling so the
// ctest line is the same for both builds.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "snapshot/disk/layer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int main(int argc, char** argv) {
  int seconds = 30;
  for (int i = 1; i < argc; ++i)
    if (std::strncmp(argv[i], "-max_total_time=", 16) == 0) seconds = std::atoi(argv[i] + 16);
  // Seed: a real layer with data, read back as bytes.
  char tmpl[] = "/tmp/cairn-fuzz-XXXXXX";
  if (!::mkdtemp(tmpl)) return 1;
  std::string path = std::string(tmpl) + "/seed";
  auto made = cairn::disk::Layer::create(path, {.virtual_size = 1 << 20, .block_shift = 12, .log_bytes = 8 * 4096});
  if (!made) return std::fprintf(stderr, "%s\n", made.error().message.c_str()), 1;
  std::vector<uint8_t> seed;
  if (FILE* f = std::fopen(path.c_str(), "rb")) {
    for (int c; (c = std::fgetc(f)) != EOF;) seed.push_back(uint8_t(c));
    std::fclose(f);
  }
  ::unlink(path.c_str());
  ::rmdir(tmpl);
  std::mt19937_64 rng(std::random_device{}());
  auto end = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  uint64_t runs = 0;
  while (std::chrono::steady_clock::now() < end) {
    auto img = seed;
    int edits = 1 + int(rng() % 16);
    for (int e = 0; e < edits; ++e) {
      size_t span = rng() % 2 ? 2 * 4096 : img.size();  // mostly the headers
      size_t at = rng() % std::max<size_t>(1, std::min(span, img.size()));
      switch (rng() % 4) {
        case 0: img[at] ^= uint8_t(1u << (rng() % 8)); break;
        case 1: img[at] = uint8_t(rng()); break;
        case 2: if (at + 8 <= img.size()) { uint64_t v = rng() % 3 ? rng() % 0x200000 : rng(); std::memcpy(&img[at], &v, 8); } break;
        default: img.resize(at); break;
      }
    }
    for (size_t slot = 0; slot < 2 && img.size() >= (slot + 1) * 4096; ++slot)
      if (rng() % 2) {  // re-seal so the damage reaches the field checks
        uint64_t sum = cairn::disk::checksum(std::span(img).subspan(slot * 4096, 4088));
        std::memcpy(&img[slot * 4096 + 4088], &sum, 8);
      }
    LLVMFuzzerTestOneInput(img.data(), img.size());
    ++runs;
  }
  std::printf("fuzz_disk_parse: %llu inputs in %d s, no crash\n", (unsigned long long)runs, seconds);
  return 0;
}
