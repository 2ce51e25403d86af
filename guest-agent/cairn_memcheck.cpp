// cairn-memcheck [--write] MIB [SECONDS]: a guest-side check that RAM
// survives a checkpoint and restore. Fills MIB MiB with a pattern that names
// each page (its index and a per-page word sequence), then, in rounds SECONDS
// apart (default 1), reads every page back in a new random order and prints
// "memcheck round N ok" or "memcheck round N BAD page P" (exit 1). A round
// right after a restore touches the guest's memory in random order, as a
// lazily restored guest does.
// --write: each page also carries a generation, kept in a table of its own;
// a round checks each page against the table, then counts its generation up
// and rewrites it. A checkpoint taken while this runs must hold RAM of one
// instant: a page saved later or earlier than the table shows as BAD after
// a restore.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <random>
#include <string_view>
#include <vector>

namespace {
constexpr size_t kPage = 4096;
constexpr size_t kWords = kPage / sizeof(uint64_t);

uint64_t word(uint64_t page, uint64_t i, uint64_t gen) {
  return (page * 0x9E3779B97F4A7C15ULL) ^ (i * 0xBF58476D1CE4E5B9ULL) ^ i ^ (gen * 0x94D049BB133111EBULL);
}
}  // namespace

int main(int argc, char** argv) {
  const bool write = argc > 1 && std::string_view(argv[1]) == "--write";
  if (write) {
    --argc;
    ++argv;
  }
  if (argc < 2 || argc > 3) {
    std::fprintf(stderr, "usage: cairn-memcheck [--write] MIB [SECONDS]\n");
    return 2;
  }
  const long mib = std::strtol(argv[1], nullptr, 10);
  const long secs = argc == 3 ? std::strtol(argv[2], nullptr, 10) : 1;
  if (mib <= 0 || mib > 65536 || secs < 0) {
    std::fprintf(stderr, "cairn-memcheck: MIB must be 1 to 65536, SECONDS 0 or more\n");
    return 2;
  }
  const size_t pages = static_cast<size_t>(mib) * (1 << 20) / kPage;
  auto* mem = static_cast<uint64_t*>(
      ::mmap(nullptr, pages * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0));
  if (mem == MAP_FAILED) {
    std::perror("cairn-memcheck: mmap");
    return 1;
  }
  for (size_t p = 0; p < pages; ++p)
    for (size_t i = 0; i < kWords; ++i) mem[p * kWords + i] = word(p, i, 0);
  std::vector<uint64_t> gen(pages, 0);
  std::printf("memcheck filled %ld MiB\n", mib);
  std::fflush(stdout);

  std::vector<size_t> order(pages);
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(::getpid());
  for (unsigned long round = 1;; ++round) {
    std::shuffle(order.begin(), order.end(), rng);
    for (size_t p : order) {
      for (size_t i = 0; i < kWords; ++i)
        if (mem[p * kWords + i] != word(p, i, gen[p])) {
          std::printf("memcheck round %lu BAD page %zu word %zu (generation %llu)\n", round, p, i,
                      static_cast<unsigned long long>(gen[p]));
          std::fflush(stdout);
          return 1;
        }
      if (!write) continue;
      ++gen[p];
      for (size_t i = 0; i < kWords; ++i) mem[p * kWords + i] = word(p, i, gen[p]);
    }
    std::printf("memcheck round %lu ok\n", round);
    std::fflush(stdout);
    if (secs > 0) ::sleep(static_cast<unsigned>(secs));
  }
}
