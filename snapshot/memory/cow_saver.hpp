// Copy-on-write capture of guest RAM: the guest is stopped only while its
// memory is write-protected, then runs while the image is written, and the
// image still holds RAM exactly as it was at that instant.
//
// start() (guest paused) registers the guest's memfd-backed mappings with
// userfaultfd in write-protect mode and protects them whole. Writer threads
// (one per CPU) then store the chunks in order and lift each chunk's
// protection once it is stored. The first write into a chunk not stored yet -
// a vCPU's through KVM, or a device thread's - waits while the fault thread
// stores that chunk, and then goes on. So no chunk changes before it is read.
// Pages never written (holes in the memfd) are protected too: the kernel keeps
// a marker in their empty page-table entry (shared memory: Linux 5.19+).
//
// Nothing here depends on KVM's dirty log, and the pause holds no copying:
// how long the guest stops does not grow with its RAM or its write rate. A
// guest that writes a lot meanwhile is slowed, each first write to a chunk
// waiting for one chunk's compression.
#pragma once
#include <atomic>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "snapshot/memory/memory_image.hpp"
#include "snapshot/memory/userfaultfd.hpp"
#include "vmm/base/error.hpp"
#include "vmm/base/unique_fd.hpp"

namespace cairn::snap {

struct CowSaveStats {
  uint64_t chunks = 0;        // in the image
  uint64_t stored = 0;        // of those, stored
  uint64_t fault_chunks = 0;  // stored early because a write met them
  uint64_t faults = 0;        // write-protect faults served
  double copy_ms = 0;         // from start to the last chunk stored (0 until then)
  bool done = false;
};

struct CowSaveOptions {
  unsigned threads = 0;       // writer threads; 0: one per online CPU
  bool start_writers = true;  // false: only writes store chunks until start_writers() (tests)
  // Keep noting which chunks are written after the instant of start(), also
  // once the copy is done (the base of an incremental checkpoint): a chunk
  // the writers stored stays protected until its first write, which marks it.
  bool track_writes = false;
};

class CopyOnWriteSaver {
 public:
  // `writer`'s regions must each carry their memfd; the writer must outlive
  // the saver, and nothing else may store into it meanwhile. Errc::unsupported
  // when the host cannot write-protect this memory with userfaultfd: copy it
  // some other way. On success every region is protected when this returns.
  static Result<std::unique_ptr<CopyOnWriteSaver>> start(MemoryImageWriter& writer, const CowSaveOptions& opts = {});
  // Whether this host can (userfaultfd write protection of shared memory),
  // tried on a page of its own; Errc::unsupported with the reason if not.
  static Result<void> check_host();
  // Stops the writers and lifts any protection left: a guest never waits on
  // a saver that is gone.
  ~CopyOnWriteSaver();
  CopyOnWriteSaver(const CopyOnWriteSaver&) = delete;
  CopyOnWriteSaver& operator=(const CopyOnWriteSaver&) = delete;

  // Blocks until every chunk is stored (all protection lifted), or returns
  // the first store error (protection lifted as well: the guest goes on).
  Result<void> wait();
  CowSaveStats stats() const;
  // Starts the writer threads, when start() was told not to.
  void start_writers();
  // With track_writes: the chunks written since start(), in order.
  std::vector<size_t> written_chunks() const;
  // With track_writes, once the copy is done, for the next (incremental)
  // image, with the guest paused: the chunks written since are protected
  // again and stored into `next` as the first time; the others are still
  // protected and unchanged since the last image (the caller marks them so
  // in `next`). Call start_writers() after.
  struct Rearmed {
    std::vector<size_t> written;    // to store
    std::vector<size_t> unchanged;  // in the parent image
  };
  Result<Rearmed> rearm(MemoryImageWriter& next);

 private:
  // kStoringWanted: a write waits for the chunk being stored. kClean: stored
  // and still protected (track_writes). kStored: stored and writable.
  enum ChunkState : uint8_t { kPending, kStoring, kStoringWanted, kClean, kStored };
  CopyOnWriteSaver() = default;
  Result<void> protect_all();
  void writer_loop();
  void serve_fault(uint64_t addr);
  // Stores chunk i unless another thread has claimed it; true if this call did.
  bool store(size_t i, bool on_fault);
  void unprotect(uint64_t addr, uint64_t len);
  void unprotect_all();
  void fail_store(Error e);
  void finish_if_complete();

  MemoryImageWriter* writer_ = nullptr;
  HostChunks chunks_;
  UniqueFd uffd_;
  std::unique_ptr<std::atomic<uint8_t>[]> state_;
  std::vector<size_t> order_;  // the chunks the writers store, in order
  std::atomic<size_t> next_{0};
  std::atomic<size_t> stored_{0};
  std::atomic<bool> stopping_{false};
  std::atomic<bool> failed_{false};
  std::atomic<uint64_t> fault_chunks_{0};
  std::atomic<uint64_t> faults_{0};
  JobOutcome outcome_;

  mutable std::mutex mu_;  // registered_, and writer_ and order_ while rearmed
  bool registered_ = false;

  unsigned threads_ = 0;
  bool track_ = false;
  FaultThread fault_thread_;
  std::vector<std::thread> writers_;
};

}  // namespace cairn::snap
