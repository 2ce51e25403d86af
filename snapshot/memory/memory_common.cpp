// Pieces shared by the memory image writer and reader.
#include <algorithm>
#include <atomic>
#include <mutex>
#include <optional>
#include <thread>

#include "snapshot/memory/memory_image.hpp"

namespace cairn::snap {

std::vector<ChunkSpan> chunk_spans(std::span<const RegionLayout> layout, uint32_t chunk_size) {
  std::vector<ChunkSpan> out;
  for (size_t r = 0; r < layout.size(); ++r)
    for (uint64_t off = 0; off < layout[r].size; off += chunk_size)
      out.push_back({r, off, std::min<uint64_t>(chunk_size, layout[r].size - off)});
  return out;
}

HostChunks::HostChunks(std::vector<RamRegion> regions, uint32_t chunk_size)
    : regions_(std::move(regions)), chunk_size_(chunk_size) {
  std::vector<RegionLayout> layout;
  for (auto& r : regions_) layout.push_back({r.gpa, r.size});
  spans_ = chunk_spans(layout, chunk_size);
  for (size_t c = 0; c < spans_.size(); ++c)
    if (spans_[c].offset == 0) first_chunk_.push_back(c);
}

std::optional<size_t> HostChunks::chunk_at(uint64_t addr) const {
  for (size_t r = 0; r < regions_.size(); ++r) {
    const uint64_t base = reinterpret_cast<uint64_t>(regions_[r].host);
    if (addr >= base && addr - base < regions_[r].size) return first_chunk_[r] + (addr - base) / chunk_size_;
  }
  return std::nullopt;
}

Result<void> parallel_for(size_t count, unsigned threads, const std::function<Result<void>(size_t)>& fn) {
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  threads = static_cast<unsigned>(std::min<size_t>(threads, std::max<size_t>(count, 1)));
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex mu;
  std::optional<Error> first;
  auto worker = [&] {
    for (;;) {
      size_t i = next.fetch_add(1);
      if (i >= count || failed.load()) return;
      if (auto r = fn(i); !r) {
        std::lock_guard lk(mu);
        if (!first) first = r.error();
        failed = true;
        return;
      }
    }
  };
  std::vector<std::thread> pool;
  for (unsigned t = 1; t < threads; ++t) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();
  if (first) return std::unexpected(std::move(*first));
  return {};
}

}  // namespace cairn::snap
