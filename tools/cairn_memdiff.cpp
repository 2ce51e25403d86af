// cairn-memdiff OLD NEW: how much guest RAM changed between two checkpoints
// (folders with memory.img, incremental chains followed), as one JSON line:
// the pages that differ, and their size compressed as cairn stores RAM (each
// run of changed pages within a chunk one lz4 block). The benchmark compares
// an incremental checkpoint's bytes with this.
#include <lz4.h>

#include <cstdio>
#include <cstring>
#include <vector>

#include <fmt/core.h>

#include "snapshot/memory/image_chain.hpp"

namespace {
using namespace cairn;
using namespace cairn::snap;

Result<void> run(const std::string& old_dir, const std::string& new_dir) {
  auto a = MemoryImageChain::open_checkpoint(old_dir);
  if (!a) return std::unexpected(a.error());
  auto b = MemoryImageChain::open_checkpoint(new_dir);
  if (!b) return std::unexpected(b.error());
  if (a->layout() != b->layout() || a->chunk_size() != b->chunk_size())
    return fail(Errc::invalid_argument, "the two checkpoints' RAM layouts or chunk sizes differ");
  // Chunk by chunk: a guest's RAM twice need not fit in memory.
  const auto spans = chunk_spans(b->layout(), b->chunk_size());
  std::vector<uint8_t> old_chunk(b->chunk_size()), new_chunk(b->chunk_size());
  std::vector<char> out(static_cast<size_t>(LZ4_compressBound(static_cast<int>(b->chunk_size()))));
  uint64_t pages = 0, changed = 0, compressed = 0;
  for (size_t i = 0; i < spans.size(); ++i) {
    const uint64_t len = spans[i].length;
    if (auto r = a->holder(i).place_chunk(i, old_chunk.data(), len, /*already_zero=*/false); !r) return r;
    if (auto r = b->holder(i).place_chunk(i, new_chunk.data(), len, /*already_zero=*/false); !r) return r;
    const uint64_t n = len / kMemoryPageSize;
    pages += n;
    auto differs = [&](uint64_t p) {
      return std::memcmp(old_chunk.data() + p * kMemoryPageSize, new_chunk.data() + p * kMemoryPageSize,
                         kMemoryPageSize) != 0;
    };
    for (uint64_t p = 0; p < n;) {
      if (!differs(p)) {
        ++p;
        continue;
      }
      uint64_t q = p + 1;  // a run of changed pages, one lz4 block
      while (q < n && differs(q)) ++q;
      const int run_len = static_cast<int>((q - p) * kMemoryPageSize);
      const int c = LZ4_compress_default(reinterpret_cast<const char*>(new_chunk.data() + p * kMemoryPageSize),
                                         out.data(), run_len, static_cast<int>(out.size()));
      compressed += c > 0 && c < run_len ? static_cast<uint64_t>(c) : static_cast<uint64_t>(run_len);
      changed += q - p;
      p = q;
    }
  }
  fmt::print("{{\"pages\": {}, \"changed_pages\": {}, \"changed_bytes\": {}, \"changed_lz4_bytes\": {}}}\n", pages,
             changed, changed * kMemoryPageSize, compressed);
  return {};
}
}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: cairn-memdiff OLD_CHECKPOINT_DIR NEW_CHECKPOINT_DIR\n");
    return 2;
  }
  if (auto r = run(argv[1], argv[2]); !r) {
    std::fprintf(stderr, "cairn-memdiff: %s\n", r.error().message.c_str());
    return 8;
  }
  return 0;
}
