#include "snapshot/memory/lazy_loader.hpp"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <string_view>

#include "snapshot/memory/file_io.hpp"
#include "snapshot/memory/userfaultfd.hpp"

namespace cairn::snap {

namespace {
// Where shared memory gets transparent huge pages, a pwrite of one chunk
// would put a whole 2 MiB folio in the memfd, its other pages zero, and a
// touch of those would find them present: never loaded, silently wrong.
Result<void> check_no_shmem_thp() {
  std::FILE* f = std::fopen("/sys/kernel/mm/transparent_hugepage/shmem_enabled", "r");
  if (!f) return {};  // no THP in this kernel
  char buf[128] = {};
  size_t n = std::fread(buf, 1, sizeof(buf) - 1, f);
  std::fclose(f);
  std::string_view v(buf, n);
  for (std::string_view mode : {"[always]", "[within_size]", "[force]"})
    if (v.find(mode) != std::string_view::npos)
      return fail(Errc::unsupported, "shared memory uses transparent huge pages here (shmem_enabled {})",
                  mode.substr(1, mode.size() - 2));
  return {};
}
}  // namespace

Result<std::unique_ptr<LazyMemoryLoader>> LazyMemoryLoader::start(std::shared_ptr<const MemoryImageChain> image,
                                                                   std::vector<RamRegion> regions,
                                                                   ErrorHandler on_error,
                                                                   const LazyLoadOptions& opts) {
  if (auto r = image->check_regions(regions); !r) return std::unexpected(r.error());
  for (size_t i = 0; i < regions.size(); ++i)
    if (regions[i].fd < 0) return fail(Errc::invalid_argument, "guest memory region {} has no memfd", i);

  auto l = std::unique_ptr<LazyMemoryLoader>(new LazyMemoryLoader());
  l->image_ = std::move(image);
  l->chunks_ = HostChunks(std::move(regions), l->image_->chunk_size());
  l->on_error_ = std::move(on_error);
  l->state_ = std::make_unique<std::atomic<uint8_t>[]>(l->chunks_.size());

  if (auto r = check_no_shmem_thp(); !r) return std::unexpected(r.error());
  uint64_t features = 0;
  auto uffd = open_userfaultfd(features);
  if (!uffd) return std::unexpected(uffd.error());
  l->uffd_ = std::move(*uffd);
  if (!(features & UFFD_FEATURE_MISSING_SHMEM))
    return fail(Errc::unsupported, "this kernel's userfaultfd cannot serve shared memory");
  if (auto r = l->register_regions(); !r) return std::unexpected(r.error());
  if (auto r = l->fault_thread_.start(l->uffd_.get(), [p = l.get()](uint64_t addr) { p->serve_fault(addr); }); !r)
    return std::unexpected(r.error());
  unsigned threads = opts.prefetch_threads ? opts.prefetch_threads : std::max(1u, std::thread::hardware_concurrency());
  if (!opts.prefetch) threads = 0;
  for (unsigned t = 0; t < threads; ++t) l->prefetchers_.emplace_back([p = l.get()] { p->prefetch_loop(); });
  return l;
}

Result<void> LazyMemoryLoader::register_regions() {
  for (auto& r : chunks_.regions())
    if (auto res = register_range(uffd_.get(), r.host, r.size, UFFDIO_REGISTER_MODE_MISSING,
                                  (1ULL << _UFFDIO_WAKE) | (1ULL << _UFFDIO_ZEROPAGE));
        !res)
      return res;
  return {};
}

LazyMemoryLoader::~LazyMemoryLoader() {
  stopping_ = true;
  for (auto& t : prefetchers_)
    if (t.joinable()) t.join();
  fault_thread_.stop();
  // Closing the userfaultfd unregisters the mappings: a later touch of a
  // page never loaded finds a hole (zeros) instead of waiting forever.
}

void LazyMemoryLoader::prefetch_loop() {
  while (!stopping_ && !failed_) {
    size_t i = next_prefetch_.fetch_add(1);
    if (i >= chunks_.size()) return;
    (void)load(i, /*on_demand=*/false);
  }
}

bool LazyMemoryLoader::load(size_t i, bool on_demand) {
  uint8_t expect = kUnloaded;
  if (!state_[i].compare_exchange_strong(expect, kLoading)) return false;
  if (on_demand) demand_chunks_.fetch_add(1);  // before the wake: a woken toucher may read the stats
  thread_local std::vector<uint8_t> stored, pages;
  if (auto r = load_chunk(i, stored, pages); !r) {
    fail_load(std::move(r.error()).context("loading guest memory"));
    wake_chunk(i);  // its waiters fault again and get zero pages, with the vCPUs told to stop
    return true;
  }
  state_[i].store(kLoaded, std::memory_order_release);
  wake_chunk(i);
  loaded_.fetch_add(1);
  finish_if_complete();
  return true;
}

Result<void> LazyMemoryLoader::load_chunk(size_t i, std::vector<uint8_t>& stored, std::vector<uint8_t>& pages) {
  const MemoryImageReader& holder = image_->holder(i);
  const ChunkEntry& e = holder.index()[i];
  if (e.present_pages == 0) return {};
  if (auto r = holder.read_chunk(i, stored, pages); !r) return r;
  const ChunkSpan& s = chunks_.span(i);
  const int fd = chunks_.regions()[s.region].fd;
  const unsigned npages = static_cast<unsigned>(s.length / kMemoryPageSize);
  // Runs of present pages, each one pwrite into the memfd.
  size_t next = 0;
  for (unsigned p = 0; p < npages;) {
    if (!e.present(p)) {
      ++p;
      continue;
    }
    unsigned q = p;
    while (q < npages && e.present(q)) ++q;
    std::span<const uint8_t> run(pages.data() + next * kMemoryPageSize, size_t{q - p} * kMemoryPageSize);
    if (auto r = pwrite_full(fd, s.offset + uint64_t{p} * kMemoryPageSize, run, "guest memory"); !r) return r;
    next += q - p;
    p = q;
  }
  return {};
}

void LazyMemoryLoader::wake_chunk(size_t i) {
  uffdio_range range{chunks_.addr(i), chunks_.span(i).length};
  (void)::ioctl(uffd_.get(), UFFDIO_WAKE, &range);
}

void LazyMemoryLoader::fail_load(Error e) {
  // The vCPUs are told to stop before any fault is let go.
  (void)outcome_.fail(std::move(e), [this](const Error& err) {
    if (on_error_) on_error_(err);
    failed_ = true;
  });
}

void LazyMemoryLoader::finish_if_complete() {
  if (loaded_.load() != chunks_.size()) return;
  // Every page is in the memfd or a hole that reads as zeros: no fault needs
  // the loader any more (unregistering wakes any that still wait).
  for (auto& r : chunks_.regions()) {
    uffdio_range range{reinterpret_cast<uint64_t>(r.host), r.size};
    (void)::ioctl(uffd_.get(), UFFDIO_UNREGISTER, &range);
  }
  (void)outcome_.finish();
}

void LazyMemoryLoader::serve_fault(uint64_t addr) {
  faults_.fetch_add(1);
  const uint64_t page = addr & ~uint64_t{kMemoryPageSize - 1};
  if (auto chunk = chunks_.chunk_at(page); chunk && !failed_ && state_[*chunk].load(std::memory_order_acquire) != kLoaded) {
    (void)load(*chunk, /*on_demand=*/true);
    // Claimed by a prefetcher: it wakes the chunk when its pages are in.
    if (state_[*chunk].load(std::memory_order_acquire) != kLoaded && !failed_) return;
  }
  // The chunk is in: the page is in the memfd (wake the faulting thread) or
  // the image left it out (give it a zero page, which also wakes it).
  uffdio_zeropage z{};
  z.range = {page, kMemoryPageSize};
  if (::ioctl(uffd_.get(), UFFDIO_ZEROPAGE, &z) != 0) {
    uffdio_range range{page, kMemoryPageSize};
    (void)::ioctl(uffd_.get(), UFFDIO_WAKE, &range);
  }
}

Result<void> LazyMemoryLoader::wait() { return outcome_.wait(); }

LazyLoadStats LazyMemoryLoader::stats() const {
  return {chunks_.size(), loaded_.load(), demand_chunks_.load(), faults_.load(), outcome_.ms(), outcome_.done()};
}

}  // namespace cairn::snap
