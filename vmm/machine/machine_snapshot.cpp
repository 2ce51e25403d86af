// Standard checkpoints of a Machine: save into a folder, restore into a fresh
// VM. A checkpoint folder holds two files (docs/checkpoint-format.md):
//   state.bin   vCPU, VM and device state and the machine config (snapshot/state)
//   memory.img  guest RAM (snapshot/memory)
#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "devices/block_backend.hpp"
#include "devices/i8042.hpp"
#include "devices/serial8250.hpp"
#include "devices/virtio/mmio_transport.hpp"
#include "devices/virtio/vsock_device.hpp"
#include "snapshot/memory/cow_saver.hpp"
#include "snapshot/memory/file_io.hpp"
#include "snapshot/memory/guest_ram.hpp"
#include "snapshot/memory/image_chain.hpp"
#include "snapshot/memory/lazy_loader.hpp"
#include "snapshot/memory/memory_image.hpp"
#include "snapshot/state/container.hpp"
#include "snapshot/state/machine_state.hpp"
#include "vmm/kvm/host_check.hpp"
#include "vmm/machine/machine.hpp"

namespace cairn {

namespace {
constexpr const char* kStateFile = "state.bin";
namespace fs = std::filesystem;

double ms_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

// Removes a half-written checkpoint folder unless released.
struct TempDir {
  std::string path;
  ~TempDir() {
    if (path.empty()) return;
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// Runs `fn` when leaving the scope (resuming the guest on every path).
template <class F>
struct Finally {
  F fn;
  ~Finally() { fn(); }
};
template <class F>
Finally(F) -> Finally<F>;

Result<uint64_t> write_file_synced(const std::string& path, std::span<const uint8_t> bytes) {
  auto fd = snap::create_new(path);
  if (!fd) return std::unexpected(fd.error());
  if (auto r = snap::pwrite_full(fd->get(), 0, bytes, path); !r) return std::unexpected(r.error());
  if (auto r = snap::fsync_fd(fd->get(), path); !r) return std::unexpected(r.error());
  return bytes.size();
}

// The virtio device names a machine built from `cfg` has, in bus order.
std::vector<std::string> expected_virtio(const MachineConfig& cfg) {
  std::vector<std::string> names(cfg.disks.size(), "virtio-blk");
  if (cfg.vsock) names.push_back("virtio-vsock");
  return names;
}

// The checkpoint must come from a machine like the one `cfg` describes.
Result<void> check_same_machine(const snap::MachineState& st, const MachineConfig& cfg) {
  const auto& c = st.config;
  if (c.memory != cfg.memory)
    return fail(Errc::invalid_argument, "the checkpoint has {} MiB of memory, the machine {} MiB (use --memory {}M)",
                c.memory >> 20, cfg.memory >> 20, c.memory >> 20);
  if (c.cpus != cfg.cpus)
    return fail(Errc::invalid_argument, "the checkpoint has {} vCPUs, the machine {} (use --cpus {})", c.cpus, cfg.cpus,
                c.cpus);
  if (c.disks.size() != cfg.disks.size())
    return fail(Errc::invalid_argument, "the checkpoint has {} disks, the machine {}", c.disks.size(),
                cfg.disks.size());
  for (size_t i = 0; i < c.disks.size(); ++i)
    if (c.disks[i].read_only != cfg.disks[i].read_only)
      return fail(Errc::invalid_argument, "disk {} ({}) was {} in the checkpoint", i, cfg.disks[i].path,
                  c.disks[i].read_only ? "read-only" : "writable");
  if (c.vsock_cid.has_value() != cfg.vsock.has_value() || (c.vsock_cid && *c.vsock_cid != cfg.vsock->cid))
    return fail(Errc::invalid_argument, "the checkpoint's vsock device ({}) differs from the machine's ({})",
                c.vsock_cid ? fmt::format("CID {}", *c.vsock_cid) : "none",
                cfg.vsock ? fmt::format("CID {}", cfg.vsock->cid) : "none");
  auto names = expected_virtio(cfg);
  if (st.devices.virtio.size() != names.size())
    return fail(Errc::corrupt, "the checkpoint saved {} virtio devices, its config lists {}", st.devices.virtio.size(),
                names.size());
  for (size_t i = 0; i < names.size(); ++i) {
    const auto& v = st.devices.virtio[i];
    if (v.device != names[i] || v.vsock.has_value() != (names[i] == "virtio-vsock"))
      return fail(Errc::corrupt, "virtio device {} was saved as {}, expected {}", i, v.device, names[i]);
  }
  return {};
}
}  // namespace

Result<snap::MachineState> Machine::capture_state() {
  snap::MachineState st;
  st.config.memory = cfg_.memory;
  st.config.cpus = cfg_.cpus;
  for (size_t i = 0; i < disks_.size(); ++i) st.config.disks.push_back({cfg_.disks[i].read_only, disks_[i]->size()});
  if (cfg_.vsock) st.config.vsock_cid = cfg_.vsock->cid;
  st.config.kernel_cmdline = cmdline_;

  auto vm = snap::capture_vm(*vm_);
  if (!vm) return std::unexpected(vm.error());
  st.vm = *vm;
  auto msr_list = kvm_->msr_index_list();
  if (!msr_list) return std::unexpected(msr_list.error());
  int xsave2 = vm_->check_extension(KVM_CAP_XSAVE2);
  for (auto& v : vcpus_) {
    auto msrs = snap::readable_msrs(v, *msr_list);
    if (!msrs) return std::unexpected(msrs.error());
    auto s = snap::capture_vcpu(v, *msrs, xsave2 > 0 ? static_cast<size_t>(xsave2) : 0);
    if (!s) return std::unexpected(std::move(s.error()).context(fmt::format("vCPU {}", v.index())));
    st.vcpus.push_back(std::move(*s));
  }

  st.devices.serial = serial_->save();
  st.devices.i8042 = i8042_->save();
  for (size_t i = 0; i < transports_.size(); ++i) {
    snap::VirtioDeviceState d;
    d.device = std::string(virtio_devices_[i]->name());
    d.transport = transports_[i]->save();
    if (auto* vs = dynamic_cast<VsockDevice*>(virtio_devices_[i].get()))
      d.vsock = vs->save();
    else if (d.device != "virtio-blk")  // virtio-blk keeps no state beyond its transport
      return fail(Errc::unsupported, "device {} cannot be saved in a checkpoint", d.device);
    st.devices.virtio.push_back(std::move(d));
  }
  return st;
}

// Pre-copy: with KVM's dirty log on, every chunk is stored while the guest
// runs, then the chunks written meanwhile, round after round, until few are
// left (or the guest writes as fast as they are stored); those few are left
// for the pause. The fallback where the host cannot write-protect shared
// memory for copy-on-write (host_check.hpp).
Result<void> Machine::live_copy_memory(snap::MemoryImageWriter& writer, bool& logging, LiveCopy& out) {
  // Host writes from before this point are in memory already (device code
  // marks a page after writing it), so the full pass below sees them.
  (void)memory_.take_vmm_dirty_pages();
  if (auto r = vm_->set_dirty_logging(memory_, true); !r) return std::unexpected(r.error());
  logging = true;
  if (auto r = writer.store_all(); !r) return std::unexpected(r.error());
  size_t last = writer.chunk_count();
  for (out.rounds = 1; out.rounds < kLiveCopyMaxRounds; ++out.rounds) {
    auto dirty = take_dirty_chunks(writer, {});
    if (!dirty) return std::unexpected(dirty.error());
    if (dirty->size() <= kLiveCopyPausedChunks || dirty->size() >= last) {
      out.pending = std::move(*dirty);
      return {};
    }
    last = dirty->size();
    if (auto r = writer.store(*dirty); !r) return std::unexpected(r.error());
  }
  auto dirty = take_dirty_chunks(writer, {});
  if (!dirty) return std::unexpected(dirty.error());
  out.pending = std::move(*dirty);
  return {};
}

// The chunks holding pages the guest (KVM's log) or a device (GuestMemory's
// host-write log) wrote since the last call, plus `also`; both logs are cleared.
Result<std::vector<size_t>> Machine::take_dirty_chunks(const snap::MemoryImageWriter& writer, std::vector<size_t> also) {
  std::vector<bool> dirty(writer.chunk_count(), false);
  for (size_t c : also) dirty[c] = true;
  std::vector<uint64_t> bits;
  const auto& regions = memory_.regions();
  for (uint32_t slot = 0; slot < regions.size(); ++slot) {
    const uint64_t pages = regions[slot].size / GuestMemory::kPageSize;
    if (auto r = vm_->take_dirty_log(slot, bits, pages); !r) return std::unexpected(r.error());
    for (size_t w = 0; w < bits.size(); ++w)
      for (uint64_t b = bits[w]; b; b &= b - 1) {
        uint64_t gpa = regions[slot].gpa + (w * 64 + static_cast<uint64_t>(__builtin_ctzll(b))) * GuestMemory::kPageSize;
        if (auto c = writer.chunk_of(gpa)) dirty[*c] = true;
      }
  }
  for (uint64_t gpa : memory_.take_vmm_dirty_pages())
    if (auto c = writer.chunk_of(gpa)) dirty[*c] = true;
  std::vector<size_t> out;
  for (size_t c = 0; c < dirty.size(); ++c)
    if (dirty[c]) out.push_back(c);
  return out;
}

// Compares the image at `path` page by page with `expected` (one buffer per
// region): a page that differs is a write the dirty logs missed.
Result<void> Machine::verify_image(const std::string& dir, const std::vector<std::vector<uint8_t>>& expected) const {
  auto image = snap::MemoryImageChain::open_checkpoint(dir);
  if (!image) return std::unexpected(image.error());
  std::vector<std::vector<uint8_t>> got;
  std::vector<snap::RamRegion> regions;
  for (auto& r : memory_.regions()) {
    got.emplace_back(r.size, 0);
    regions.push_back({r.gpa, r.size, got.back().data(), -1});
  }
  if (auto r = image->load(regions, /*already_zero=*/true); !r) return std::unexpected(r.error());
  size_t bad = 0;
  std::string first;
  for (size_t i = 0; i < got.size(); ++i)
    for (uint64_t off = 0; off < got[i].size(); off += GuestMemory::kPageSize)
      if (std::memcmp(got[i].data() + off, expected[i].data() + off, GuestMemory::kPageSize) != 0) {
        if (bad++ < 8) first += fmt::format(" {:#x}", regions[i].gpa + off);
      }
  if (bad) return fail(Errc::corrupt, "the memory image differs from the paused guest's RAM in {} pages:{}", bad, first);
  return {};
}

Result<CheckpointStats> Machine::save_checkpoint(const std::string& dir_arg, const std::vector<DiskFreeze>& freeze) {
  std::lock_guard one_at_a_time(checkpoint_mu_);
  const auto t0 = std::chrono::steady_clock::now();
  CheckpointStats stats;
  // A restored guest's RAM must be all in before it is copied: a chunk not
  // yet loaded is a hole in the memfd, which the writer takes for zeros.
  if (auto r = wait_memory_loaded(); !r) return std::unexpected(r.error());
  fs::path dir = fs::path(dir_arg).lexically_normal();
  if (!dir.has_filename()) dir = dir.parent_path();  // "a/b/" -> "a/b"
  if (dir.empty()) return fail(Errc::invalid_argument, "no checkpoint folder given");
  struct stat st {};
  if (::lstat(dir.c_str(), &st) == 0) return fail(Errc::invalid_argument, "{} already exists", dir.string());
  fs::path parent = dir.parent_path().empty() ? fs::path(".") : dir.parent_path();
  std::string tmpl = dir.string() + ".tmp-XXXXXX";
  if (!::mkdtemp(tmpl.data())) return fail_errno("creating a folder next to {}", dir.string());
  TempDir tmp{tmpl};

  const std::string mem_path = tmpl + "/" + snap::kCheckpointMemoryFile;
  auto mem_fd = snap::create_new(mem_path);
  if (!mem_fd) return std::unexpected(mem_fd.error());
  // How a running guest's RAM is copied (host_check.hpp says why in this order).
  static const MemoryCopyPolicy policy = memory_copy_policy();
  const bool guest_runs = running_unpaused();
  MemoryCopy method = guest_runs ? policy.method : MemoryCopy::paused;
  if (guest_runs && method == MemoryCopy::paused) stats.memory_copy_note = policy.why;
  if (method == MemoryCopy::copy_on_write) {
    static const Result<void> cow_here = snap::CopyOnWriteSaver::check_host();
    if (!cow_here) {
      method = policy.fallback;
      stats.memory_copy_note = cow_here.error().message;
      if (!policy.why.empty()) stats.memory_copy_note += "; " + policy.why;
    }
  }
  // Incremental: the guest's writes were tracked since this VMM's last
  // checkpoint, whose memory image is still there; only the chunks written
  // since are stored, the others refer to that image.
  // A chain is cut at kMaxIncrementalDepth images: each adds a file to open
  // and check on restore (a chain may hold 255).
  constexpr size_t kMaxIncrementalDepth = 32;
  const char* inc_env = std::getenv("CAIRN_INCREMENTAL");
  bool incremental = method == MemoryCopy::copy_on_write && tracker_ && base_image_id_ &&
                     base_depth_ < kMaxIncrementalDepth &&
                     !(inc_env && std::string_view(inc_env) == "0") &&
                     fs::exists(fs::path(base_dir_) / snap::kCheckpointMemoryFile) &&
                     fs::absolute(dir).lexically_normal().parent_path() ==
                         fs::path(base_dir_).lexically_normal().parent_path();
  if (incremental) {
    // Removing a checkpoint may have folded its memory into the base's image:
    // the same RAM under a new id.
    auto base = snap::MemoryImageReader::open((fs::path(base_dir_) / snap::kCheckpointMemoryFile).string());
    if (!base) return std::unexpected(std::move(base.error()).context("the last checkpoint's memory image"));
    base_image_id_ = base->image_id();
  } else {
    tracker_.reset();
    base_image_id_ = 0;
  }
  auto regions = snap::ram_regions(memory_);
  // 256 KiB chunks: a running guest keeps writing a few pages here and
  // there, and the pause stores every chunk holding one of them again (with
  // 2 MiB chunks, an idle guest left about 20 MiB for the pause; lz4 gains
  // nothing from larger blocks, its window is 64 KiB).
  auto writer = snap::MemoryImageWriter::create(mem_fd->get(), regions,
                                                {.chunk_size = 256 << 10, .parent_id = incremental ? base_image_id_ : 0});
  if (!writer) return std::unexpected(writer.error());
  // A failed checkpoint ends the tracking: the next one is full.
  bool saved = false;
  Finally forget_tracking{[&] {
    if (!saved) {
      tracker_.reset();
      base_image_id_ = 0;
    }
  }};
  std::vector<size_t> pending;
  bool logging = false;
  Finally stop_logging{[&] {
    if (logging) (void)vm_->set_dirty_logging(memory_, false);
  }};
  if (method == MemoryCopy::pre_copy) {
    const auto tl = std::chrono::steady_clock::now();
    LiveCopy live;
    if (auto r = live_copy_memory(*writer, logging, live); !r)
      return std::unexpected(std::move(r.error()).context("copying guest memory while the guest runs"));
    pending = std::move(live.pending);
    stats.live_rounds = live.rounds;
    stats.live_copy_ms = ms_since(tl);
  }
  // The disks' new layers are made before the pause, which only switches to them.
  auto prepared = prepare_disks(freeze);
  if (!prepared) return std::unexpected(std::move(prepared.error()).context("preparing the disks' new layers"));

  // Quiesce: vCPUs at an instruction boundary, device threads idle, disks durable.
  const auto tp = std::chrono::steady_clock::now();
  bool pause_here = running_unpaused();
  if (pause_here) pause();
  stats.pause_ms = ms_since(tp);
  std::vector<VsockDevice*> paused_vsock;
  Finally resume_all{[&] {
    for (auto* v : paused_vsock) v->resume();
    if (pause_here) resume();
  }};
  if (stop_requested_) return fail(Errc::invalid_state, "the VM stopped before it could be checkpointed");
  for (auto& d : virtio_devices_)
    if (auto* vs = dynamic_cast<VsockDevice*>(d.get())) {
      vs->pause();
      paused_vsock.push_back(vs);
    }
  for (size_t i = 0; i < disks_.size(); ++i)
    if (auto r = disks_[i]->flush(); !r)
      return std::unexpected(std::move(r.error()).context(fmt::format("flushing disk {}", cfg_.disks[i].path)));

  auto ts = std::chrono::steady_clock::now();
  auto state = capture_state();
  if (!state) return std::unexpected(std::move(state.error()).context("capturing the VM state"));
  stats.state_ms = ms_since(ts);
  ts = std::chrono::steady_clock::now();
  if (incremental) {
    // The chunks written since the last checkpoint are protected again; the
    // others are still protected, unchanged since.
    auto re = tracker_->rearm(*writer);
    if (!re) return std::unexpected(std::move(re.error()).context("tracking guest memory"));
    if (auto r = writer->refer_to_parent(re->unchanged); !r) return std::unexpected(r.error());
    stats.parent_chunks = re->unchanged.size();
  } else if (method == MemoryCopy::copy_on_write) {
    // Only the protection is set in the pause; the writers start after it.
    // It stays on afterwards, noting the chunks written for the next checkpoint.
    auto saver = snap::CopyOnWriteSaver::start(*writer, {.start_writers = false, .track_writes = true});
    if (saver) {
      tracker_ = std::move(*saver);
    } else {
      method = MemoryCopy::paused;
      stats.memory_copy_note = saver.error().message;
    }
  }
  snap::CopyOnWriteSaver* cow = method == MemoryCopy::copy_on_write ? tracker_.get() : nullptr;
  if (cow) {
    stats.paused_chunks = 0;  // all stored after the pause
  } else if (logging) {
    auto dirty = take_dirty_chunks(*writer, std::move(pending));
    if (!dirty) return std::unexpected(dirty.error());
    stats.paused_chunks = dirty->size();
    if (auto r = writer->store(*dirty); !r) return std::unexpected(std::move(r.error()).context("saving guest memory"));
  } else {
    stats.paused_chunks = writer->chunk_count();
    if (auto r = writer->store_all(); !r) return std::unexpected(std::move(r.error()).context("saving guest memory"));
  }
  stats.memory_ms = ms_since(ts);
  // CAIRN_VERIFY_MEMORY=1: keep the paused guest's RAM aside and compare the
  // finished image with it (tests of the live copy; costs a copy of RAM).
  std::vector<std::vector<uint8_t>> expected;
  if (const char* v = std::getenv("CAIRN_VERIFY_MEMORY"); v && std::string_view(v) == "1")
    for (auto& r : memory_.regions()) expected.emplace_back(r.host(), r.host() + r.size);
  // The disks as they are now belong to the checkpoint; the guest goes on in new layers.
  if (!freeze.empty()) {
    auto frozen = freeze_disks_paused(*prepared);
    if (!frozen) return std::unexpected(std::move(frozen.error()).context("freezing the disks"));
    stats.frozen = std::move(*frozen);
  }
  // Guest memory is on disk (in the page cache): the guest may go on.
  for (auto* v : paused_vsock) v->resume();
  paused_vsock.clear();
  if (pause_here) resume();
  pause_here = false;
  stats.paused_ms = ms_since(tp);
  if (logging) {
    logging = false;
    if (auto r = vm_->set_dirty_logging(memory_, false); !r) return std::unexpected(r.error());
  }
  if (cow) {
    cow->start_writers();
    auto r = cow->wait();
    const auto cs = cow->stats();
    stats.live_copy_ms = cs.copy_ms;
    stats.cow_fault_chunks = cs.fault_chunks;
    if (!r) return std::unexpected(std::move(r.error()).context("copying guest memory while the guest runs"));
  }
  stats.memory_copy = std::string(memory_copy_name(method));
  auto mstats = writer->finish();
  if (!mstats) return std::unexpected(std::move(mstats.error()).context("saving guest memory"));

  if (auto r = snap::fsync_fd(mem_fd->get(), mem_path); !r) return std::unexpected(r.error());
  if (!expected.empty()) {
    if (auto r = verify_image(tmpl, expected); !r) return std::unexpected(r.error());
    stats.memory_verified = true;
  }
  auto encoded = snap::encode_machine_state(*state);
  if (!encoded) return std::unexpected(encoded.error());
  auto state_bytes = write_file_synced(tmpl + "/" + kStateFile, *encoded);
  if (!state_bytes) return std::unexpected(state_bytes.error());
  if (auto r = snap::fsync_dir(tmpl); !r) return std::unexpected(r.error());
  if (::rename(tmpl.c_str(), dir.c_str()) != 0) return fail_errno("renaming {} to {}", tmpl, dir.string());
  tmp.path.clear();
  if (auto r = snap::fsync_dir(parent.string()); !r) return std::unexpected(r.error());
  if (tracker_) {
    saved = true;
    base_dir_ = fs::absolute(dir).string();
    base_image_id_ = mstats->image_id;
    base_depth_ = incremental ? base_depth_ + 1 : 1;
  }
  stats.incremental = incremental;

  stats.guest_memory_bytes = mstats->guest_bytes;
  stats.memory_file_bytes = mstats->file_bytes;
  stats.state_file_bytes = *state_bytes;
  stats.stored_pages = mstats->stored_pages;
  stats.zero_pages = mstats->zero_pages;
  stats.compacted_bytes = mstats->compacted_bytes;
  stats.total_ms = ms_since(t0);
  return stats;
}

Result<void> Machine::start_memory_load(std::shared_ptr<const snap::MemoryImageChain> image) {
  // Lazily by default: the vCPUs start at once and a page's chunk is loaded
  // when first touched, while prefetch threads load the rest in order (see
  // lazy_loader.hpp). A damaged chunk met then stops the VM with the error.
  const char* env = std::getenv("CAIRN_LAZY_RESTORE");
  if (!env || std::string_view(env) != "0") {
    auto lazy = snap::LazyMemoryLoader::start(image, snap::ram_regions(memory_), [this](const Error& e) {
      request_stop({MachineExit::Kind::error, 0, e.message, e.code});
    });
    if (lazy) {
      lazy_memory_ = std::move(*lazy);
      return {};
    }
    if (lazy.error().code != Errc::unsupported) return std::unexpected(lazy.error());
    restore_note_ = fmt::format("memory loaded before the guest ran: {}", lazy.error().message);
  } else {
    restore_note_ = "memory loaded before the guest ran (CAIRN_LAZY_RESTORE=0)";
  }
  // One pass reads, checks and places every chunk. A damaged one fails the
  // restore here, before any vCPU exists: the half-filled memory is dropped
  // with the machine and the guest never runs on it.
  if (auto r = image->load(snap::ram_regions(memory_), /*already_zero=*/true); !r)
    return std::unexpected(std::move(r.error()).context("restoring guest memory"));
  return {};
}

std::optional<snap::LazyLoadStats> Machine::memory_load_stats() const {
  if (!lazy_memory_) return std::nullopt;
  return lazy_memory_->stats();
}

Result<void> Machine::wait_memory_loaded() {
  if (!lazy_memory_) return {};
  if (auto r = lazy_memory_->wait(); !r) return std::unexpected(std::move(r.error()).context("restoring guest memory"));
  return {};
}

Result<std::unique_ptr<Machine>> Machine::restore(const std::string& dir, const MachineConfig& cfg) {
  if (auto r = validate_machine_config(cfg); !r) return std::unexpected(r.error());
  // The state file and the memory image's index are read and checked before
  // anything is built; the memory's chunks as they are loaded, before the vCPUs.
  const std::string state_path = (fs::path(dir) / kStateFile).string();
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    return fail(Errc::not_found, "no checkpoint folder {}", dir);
  auto bytes = snap::read_small_file(state_path, snap::kStateMaxFileBytes);
  if (!bytes) return std::unexpected(bytes.error());
  auto state = snap::decode_machine_state(*bytes, state_path);
  if (!state) return std::unexpected(state.error());
  // The image and, for an incremental one, the images it builds on.
  auto image = snap::MemoryImageChain::open_checkpoint(dir);
  if (!image) return std::unexpected(image.error());
  if (auto r = check_same_machine(*state, cfg); !r)
    return std::unexpected(std::move(r.error()).context(fmt::format("checkpoint {}", dir)));

  auto m = std::unique_ptr<Machine>(new Machine());
  m->cfg_ = cfg;
  if (auto r = m->init_vm(); !r) return std::unexpected(r.error());
  std::vector<snap::RegionLayout> layout;
  for (auto& r : m->memory_.regions()) layout.push_back({r.gpa, r.size});
  if (layout != image->layout())
    return fail(Errc::corrupt, "checkpoint {}: the memory image's layout does not match {} MiB of guest memory", dir,
                cfg.memory >> 20);
  if (auto r = m->start_memory_load(std::make_shared<const snap::MemoryImageChain>(std::move(*image))); !r)
    return std::unexpected(r.error());
  // In-kernel interrupt controllers, PIT and kvmclock, then the vCPUs, then
  // devices: a device that raises an interrupt as it is rebuilt finds the
  // irqchip and the LAPICs in their saved state.
  if (auto r = snap::restore_vm(*m->vm_, state->vm); !r) return std::unexpected(r.error());
  if (auto r = m->setup_vcpus(/*boot=*/false); !r) return std::unexpected(r.error());
  for (size_t i = 0; i < m->vcpus_.size(); ++i)
    if (auto r = snap::restore_vcpu(m->vcpus_[i], state->vcpus[i]); !r)
      return std::unexpected(std::move(r.error()).context(fmt::format("vCPU {}", i)));
  if (auto r = m->setup_devices(&state->devices); !r) return std::unexpected(r.error());
  for (size_t i = 0; i < m->disks_.size(); ++i)
    if (m->disks_[i]->size() != state->config.disks[i].size)
      return fail(Errc::invalid_argument, "disk {} ({}) is {} bytes, the checkpoint's was {}", i, cfg.disks[i].path,
                  m->disks_[i]->size(), state->config.disks[i].size);
  m->cmdline_ = state->config.kernel_cmdline;
  return m;
}

}  // namespace cairn
