// Lazy restore of guest RAM: the guest runs before its memory is loaded.
//
// The loader registers the guest's memfd-backed mappings with userfaultfd
// (missing-page mode), so that the first touch of a page not yet loaded -
// by a vCPU through KVM, or by a VMM thread - waits while one thread loads
// that page's chunk. Meanwhile prefetch threads (one per CPU) load every
// chunk in order, decompressing in parallel. Chunks are written into the
// memfd with pwrite, which the waiting faults then find; pages the image
// leaves out (zero) stay holes until touched, then get a zero page.
//
// Each chunk's checksum is checked as it is loaded. A damaged chunk calls
// `on_error` (the machine stops its vCPUs there) before the fault that met
// it is let go on a zero-filled page: a vCPU with a stop request pending
// does not re-enter the guest, so the guest never runs on the damaged data.
// When every chunk is in, the mappings are unregistered and the threads end.
#pragma once
#include <atomic>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "snapshot/memory/image_chain.hpp"
#include "snapshot/memory/userfaultfd.hpp"
#include "vmm/base/error.hpp"
#include "vmm/base/unique_fd.hpp"

namespace cairn::snap {

struct LazyLoadStats {
  uint64_t chunks = 0;         // in the image
  uint64_t loaded_chunks = 0;  // of those, in guest memory
  uint64_t demand_chunks = 0;  // loaded because something touched them first
  uint64_t faults = 0;         // missing-page faults served
  double load_ms = 0;          // from start to the last chunk in (0 until then)
  bool done = false;           // every chunk is in
};

struct LazyLoadOptions {
  unsigned prefetch_threads = 0;  // 0: one per online CPU
  bool prefetch = true;           // false: chunks load only when touched (tests)
};

class LazyMemoryLoader {
 public:
  using ErrorHandler = std::function<void(const Error&)>;

  // `regions` must match image->layout() and each carry its memfd (RamRegion::fd),
  // not yet written. Each chunk comes from its holder in the chain (for a
  // full image, the image itself). Errc::unsupported when the host refuses
  // userfaultfd (not root and vm.unprivileged_userfaultfd=0): load eagerly instead.
  static Result<std::unique_ptr<LazyMemoryLoader>> start(std::shared_ptr<const MemoryImageChain> image,
                                                          std::vector<RamRegion> regions, ErrorHandler on_error,
                                                          const LazyLoadOptions& opts = {});
  ~LazyMemoryLoader();
  LazyMemoryLoader(const LazyMemoryLoader&) = delete;
  LazyMemoryLoader& operator=(const LazyMemoryLoader&) = delete;

  // Blocks until every chunk is loaded; the first load error if one failed.
  Result<void> wait();
  LazyLoadStats stats() const;

 private:
  enum ChunkState : uint8_t { kUnloaded, kLoading, kLoaded };
  LazyMemoryLoader() = default;
  Result<void> register_regions();
  void prefetch_loop();
  // Loads chunk i unless another thread has claimed it; true if it did.
  bool load(size_t i, bool on_demand);
  Result<void> load_chunk(size_t i, std::vector<uint8_t>& stored, std::vector<uint8_t>& pages);
  // Lets go of the faults waiting in chunk i (its pages are in the memfd).
  void wake_chunk(size_t i);
  void serve_fault(uint64_t addr);
  void fail_load(Error e);
  void finish_if_complete();

  std::shared_ptr<const MemoryImageChain> image_;
  HostChunks chunks_;
  ErrorHandler on_error_;
  UniqueFd uffd_;
  std::unique_ptr<std::atomic<uint8_t>[]> state_;
  std::atomic<size_t> next_prefetch_{0};
  std::atomic<size_t> loaded_{0};
  std::atomic<bool> stopping_{false};
  std::atomic<bool> failed_{false};
  std::atomic<uint64_t> demand_chunks_{0};
  std::atomic<uint64_t> faults_{0};
  JobOutcome outcome_;

  FaultThread fault_thread_;
  std::vector<std::thread> prefetchers_;
};

}  // namespace cairn::snap
