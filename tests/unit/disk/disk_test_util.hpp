// Helpers shared by the disk tests: a scratch folder and a byte-level model.
#pragma once
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "snapshot/disk/chain.hpp"

namespace cairn::disk::test {

// A fresh folder under /tmp, removed with everything in it at scope exit.
class TempDir {
 public:
  TempDir() {
    std::string t = (std::filesystem::temp_directory_path() / "cairn-disk-XXXXXX").string();
    path_ = ::mkdtemp(t.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline std::vector<uint8_t> read_all(Chain& c) {
  std::vector<uint8_t> out(c.size());
  auto r = c.read(0, out);
  REQUIRE(r);
  return out;
}

inline std::vector<uint8_t> read_all(const std::string& top) {
  auto c = open_chain(top, false);
  REQUIRE(c);
  return read_all(**c);
}

// Index of the first differing byte, or -1 when equal: keeps Catch from
// printing megabyte vectors on a failure.
inline long first_diff(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  if (a.size() != b.size()) return long(std::min(a.size(), b.size()));
  auto m = std::mismatch(a.begin(), a.end(), b.begin());
  return m.first == a.end() ? -1 : long(m.first - a.begin());
}

inline std::vector<uint8_t> random_bytes(std::mt19937_64& rng, size_t n) {
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = uint8_t(rng());
  return v;
}

}  // namespace cairn::disk::test
