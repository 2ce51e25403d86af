#include "snapshot/memory/cow_saver.hpp"

#include <sys/mman.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "snapshot/memory/userfaultfd.hpp"
#include "vmm/base/mapping.hpp"

namespace cairn::snap {

namespace {
// UFFDIO_WRITEPROTECT, retried while the kernel says the mappings are changing.
int write_protect(int uffd, uint64_t addr, uint64_t len, bool on) {
  uffdio_writeprotect wp{};
  wp.range = {addr, len};
  wp.mode = on ? UFFDIO_WRITEPROTECT_MODE_WP : 0;  // lifting it also wakes the writes waiting there
  int rc;
  do rc = ::ioctl(uffd, UFFDIO_WRITEPROTECT, &wp);
  while (rc != 0 && (errno == EAGAIN || errno == EINTR));
  return rc;
}
}  // namespace

Result<void> CopyOnWriteSaver::check_host() {
  UniqueFd memfd(::memfd_create("cairn-cow-probe", MFD_CLOEXEC));
  if (!memfd) return fail_errno("memfd_create");
  if (::ftruncate(memfd.get(), kMemoryPageSize) != 0) return fail_errno("sizing a memfd");
  void* p = ::mmap(nullptr, kMemoryPageSize, PROT_READ | PROT_WRITE, MAP_SHARED, memfd.get(), 0);
  if (p == MAP_FAILED) return fail_errno("mapping a memfd");
  Mapping map(p, kMemoryPageSize);
  auto file = UniqueFd(::memfd_create("cairn-cow-probe-image", MFD_CLOEXEC));
  if (!file) return fail_errno("memfd_create");
  RamRegion region{0, kMemoryPageSize, static_cast<uint8_t*>(p), memfd.get()};
  auto writer = MemoryImageWriter::create(file.get(), std::span(&region, 1), {.chunk_size = kMemoryPageSize});
  if (!writer) return std::unexpected(writer.error());
  auto saver = start(*writer, {.threads = 1, .start_writers = false});
  if (!saver) return std::unexpected(saver.error());
  return {};
}

Result<std::unique_ptr<CopyOnWriteSaver>> CopyOnWriteSaver::start(MemoryImageWriter& writer,
                                                                   const CowSaveOptions& opts) {
  auto s = std::unique_ptr<CopyOnWriteSaver>(new CopyOnWriteSaver());
  s->writer_ = &writer;
  s->chunks_ = HostChunks(writer.regions(), writer.chunk_size());
  for (size_t i = 0; i < writer.regions().size(); ++i)
    if (writer.regions()[i].fd < 0)
      return fail(Errc::unsupported, "guest memory region {} is not shared memory (no memfd)", i);
  s->state_ = std::make_unique<std::atomic<uint8_t>[]>(s->chunks_.size());
  s->order_.resize(s->chunks_.size());
  for (size_t i = 0; i < s->order_.size(); ++i) s->order_[i] = i;

  uint64_t features = 0;
  auto uffd = open_userfaultfd(features);
  if (!uffd) return std::unexpected(uffd.error());
  s->uffd_ = std::move(*uffd);
  // Without it, the kernel cannot protect shared memory's empty entries, and
  // a first write into a page never touched would go unseen.
  if (!(features & UFFD_FEATURE_WP_HUGETLBFS_SHMEM))
    return fail(Errc::unsupported, "this kernel's userfaultfd cannot write-protect shared memory (Linux 5.19+)");
  if (auto r = s->protect_all(); !r) return std::unexpected(r.error());
  s->outcome_.restart();  // the instant of the image
  if (auto r = s->fault_thread_.start(s->uffd_.get(), [p = s.get()](uint64_t addr) { p->serve_fault(addr); }); !r) {
    s->unprotect_all();
    return std::unexpected(r.error());
  }
  s->track_ = opts.track_writes;
  s->threads_ = opts.threads ? opts.threads : std::max(1u, std::thread::hardware_concurrency());
  if (opts.start_writers) s->start_writers();
  return s;
}

void CopyOnWriteSaver::start_writers() {
  if (!writers_.empty()) return;
  for (unsigned t = 0; t < threads_; ++t) writers_.emplace_back([this] { writer_loop(); });
}

Result<void> CopyOnWriteSaver::protect_all() {
  for (auto& r : chunks_.regions()) {
    if (auto res = register_range(uffd_.get(), r.host, r.size, UFFDIO_REGISTER_MODE_WP,
                                  (1ULL << _UFFDIO_WRITEPROTECT) | (1ULL << _UFFDIO_WAKE));
        !res) {
      unprotect_all();
      return res;
    }
    registered_ = true;
    if (write_protect(uffd_.get(), reinterpret_cast<uint64_t>(r.host), r.size, true) != 0) {
      int err = errno;
      unprotect_all();
      return fail(err == EINVAL || err == ENOENT ? Errc::unsupported : errc_from_errno(err),
                  "write-protecting guest memory: {}", std::strerror(err));
    }
  }
  return {};
}

CopyOnWriteSaver::~CopyOnWriteSaver() {
  stopping_ = true;
  for (auto& t : writers_)
    if (t.joinable()) t.join();
  // No fault may wait after this: lift what protection is left, then end the
  // fault thread (closing the fd unregisters the mappings).
  unprotect_all();
  fault_thread_.stop();
}

void CopyOnWriteSaver::writer_loop() {
  while (!stopping_ && !failed_) {
    size_t k = next_.fetch_add(1);
    if (k >= order_.size()) return;
    (void)store(order_[k], /*on_fault=*/false);
  }
}

bool CopyOnWriteSaver::store(size_t i, bool on_fault) {
  uint8_t expect = kPending;
  if (!state_[i].compare_exchange_strong(expect, kStoring)) return false;
  if (on_fault) fault_chunks_.fetch_add(1);
  if (auto r = writer_->store_chunk(i); !r) {
    fail_store(std::move(r.error()).context("saving guest memory"));
    return true;
  }
  // Stored: the guest may write this chunk again (lifting the protection
  // wakes the writes waiting in it). When tracking writes, a chunk no write
  // waits for stays protected, so that its first write is seen.
  uint8_t storing = kStoring;
  const bool keep_protected = track_ && !on_fault && state_[i].compare_exchange_strong(storing, kClean);
  if (!keep_protected) {
    // Marked stored before the protection is lifted, which wakes the waiting
    // writes: once one goes on, its chunk counts as written. A fault meeting
    // the mark before the lift is woken and faults again until it is lifted.
    state_[i].store(kStored, std::memory_order_release);
    unprotect(chunks_.addr(i), chunks_.span(i).length);
  }
  stored_.fetch_add(1);
  finish_if_complete();
  return true;
}

void CopyOnWriteSaver::unprotect(uint64_t addr, uint64_t len) {
  if (write_protect(uffd_.get(), addr, len, false) != 0) {
    // Cannot happen while registered; if it did, the guest must not hang on it.
    fail_store(fail_errno("lifting write protection from guest memory").error());
  }
}

void CopyOnWriteSaver::unprotect_all() {
  std::lock_guard lk(mu_);
  if (!registered_ || !uffd_) return;
  for (auto& r : chunks_.regions()) {
    (void)write_protect(uffd_.get(), reinterpret_cast<uint64_t>(r.host), r.size, false);
    uffdio_range range{reinterpret_cast<uint64_t>(r.host), r.size};
    (void)::ioctl(uffd_.get(), UFFDIO_UNREGISTER, &range);
  }
  registered_ = false;
}

void CopyOnWriteSaver::fail_store(Error e) {
  // The checkpoint has failed: the guest goes on at once.
  (void)outcome_.fail(std::move(e), [this](const Error&) {
    failed_ = true;
    unprotect_all();
  });
}

void CopyOnWriteSaver::finish_if_complete() {
  if (stored_.load() != chunks_.size()) return;
  if (!track_) unprotect_all();  // every chunk's protection is lifted already; this unregisters
  (void)outcome_.finish();
}

void CopyOnWriteSaver::serve_fault(uint64_t addr) {
  faults_.fetch_add(1);
  const uint64_t page = addr & ~uint64_t{kMemoryPageSize - 1};
  auto chunk = chunks_.chunk_at(page);
  if (!chunk || failed_) return;
  // Stored here (a write after the instant: the chunk is written).
  if (store(*chunk, /*on_fault=*/true)) return;
  for (;;) {
    uint8_t s = state_[*chunk].load(std::memory_order_acquire);
    // Being stored by a writer thread: it lifts the protection when done.
    if (s == kStoring && !state_[*chunk].compare_exchange_strong(s, kStoringWanted)) continue;
    if (s == kStoring || s == kStoringWanted) return;
    // Stored and kept protected: its first write since the instant.
    if (s == kClean) {
      if (!state_[*chunk].compare_exchange_strong(s, kStored)) continue;
      unprotect(chunks_.addr(*chunk), chunks_.span(*chunk).length);
      return;
    }
    break;
  }
  // Stored already (a message read after the wake): make sure it goes on.
  uffdio_range range{page, kMemoryPageSize};
  (void)::ioctl(uffd_.get(), UFFDIO_WAKE, &range);
}

Result<void> CopyOnWriteSaver::wait() { return outcome_.wait(); }

Result<CopyOnWriteSaver::Rearmed> CopyOnWriteSaver::rearm(MemoryImageWriter& next) {
  if (!track_) return fail(Errc::invalid_state, "this copy does not track writes");
  if (auto r = wait(); !r) return std::unexpected(r.error());
  if (next.chunk_count() != chunks_.size() || next.chunk_size() != writer_->chunk_size())
    return fail(Errc::invalid_argument, "the next image's chunks differ from this copy's");
  for (auto& t : writers_) t.join();
  writers_.clear();
  Rearmed out;
  for (size_t i = 0; i < chunks_.size(); ++i) {
    if (state_[i].load(std::memory_order_acquire) != kStored)
      out.unchanged.push_back(i);  // still protected: its first write is still to come
    else
      out.written.push_back(i);
  }
  // One ioctl per run of adjacent written chunks: each call walks the page
  // tables from the top, which costs the pause more than the pages do.
  for (size_t k = 0; k < out.written.size();) {
    const uint64_t start = chunks_.addr(out.written[k]);
    uint64_t end = start + chunks_.span(out.written[k]).length;
    size_t j = k + 1;
    for (; j < out.written.size() && chunks_.addr(out.written[j]) == end; ++j)
      end += chunks_.span(out.written[j]).length;
    if (write_protect(uffd_.get(), start, end - start, true) != 0)
      return fail_errno("write-protecting guest memory again");
    for (; k < j; ++k) state_[out.written[k]].store(kPending, std::memory_order_release);
  }
  std::lock_guard lk(mu_);
  writer_ = &next;
  order_ = out.written;
  next_ = 0;
  stored_ = out.unchanged.size();
  fault_chunks_ = 0;
  faults_ = 0;
  outcome_.restart();
  return out;
}

std::vector<size_t> CopyOnWriteSaver::written_chunks() const {
  std::vector<size_t> out;
  for (size_t i = 0; i < chunks_.size(); ++i)
    if (state_[i].load(std::memory_order_acquire) == kStored) out.push_back(i);
  return out;
}

CowSaveStats CopyOnWriteSaver::stats() const {
  return {chunks_.size(), stored_.load(), fault_chunks_.load(), faults_.load(), outcome_.ms(), outcome_.done()};
}

}  // namespace cairn::snap
