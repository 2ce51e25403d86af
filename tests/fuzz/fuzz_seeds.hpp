// Seeding for the fuzz targets: LLVMFuzzerInitialize writes valid inputs into
// the corpus folder named on the command line when that folder is empty, so a
// fresh build tree starts from real files instead of from nothing.
#pragma once
#include <dirent.h>
#include <sys/stat.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

namespace cairn::fuzz {

// The first non-flag argument (libFuzzer's first corpus folder), or "".
inline std::string corpus_dir(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (argv[i][0] != '-') return argv[i];
  return {};
}

inline bool dir_is_empty(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return false;
  bool empty = true;
  while (dirent* e = ::readdir(d))
    if (std::string_view(e->d_name) != "." && std::string_view(e->d_name) != "..") empty = false;
  ::closedir(d);
  return empty;
}

// When DIR exists (or can be made) and is empty, writes each seed that
// make_seeds() returns as DIR/seed-N.
template <class F>
void write_seeds(int argc, char** argv, F make_seeds) {
  std::string dir = corpus_dir(argc, argv);
  if (dir.empty()) return;
  ::mkdir(dir.c_str(), 0755);
  if (!dir_is_empty(dir)) return;
  const std::vector<std::vector<uint8_t>> seeds = make_seeds();
  for (size_t i = 0; i < seeds.size(); ++i) {
    std::string path = dir + "/seed-" + std::to_string(i);
    if (FILE* f = std::fopen(path.c_str(), "wb")) {
      std::fwrite(seeds[i].data(), 1, seeds[i].size(), f);
      std::fclose(f);
    }
  }
  std::fprintf(stderr, "cairn fuzz: wrote %zu seed(s) into %s\n", seeds.size(), dir.c_str());
}

// A seed is the flags byte the harness reads first, then the file's bytes.
inline std::vector<uint8_t> with_flags(uint8_t flags, const std::vector<uint8_t>& bytes) {
  std::vector<uint8_t> out{flags};
  out.insert(out.end(), bytes.begin(), bytes.end());
  return out;
}

}  // namespace cairn::fuzz
