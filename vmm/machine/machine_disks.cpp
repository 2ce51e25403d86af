// Re-layering a running VM's disks: freezing the top layers into a
// checkpoint, and merging a layer that no checkpoint needs any more into the
// running one. Both happen with the vCPUs paused: virtio-blk requests are
// served on vCPU threads, so a paused VM has no disk request in flight.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "devices/raw_file_backend.hpp"
#include "devices/virtio/block.hpp"
#include "devices/virtio/vsock_device.hpp"
#include "snapshot/disk/chain.hpp"
#include "snapshot/disk/convert.hpp"
#include "snapshot/disk/disk_backend.hpp"
#include "snapshot/disk/merge.hpp"
#include "vmm/base/all_zero.hpp"
#include "vmm/machine/disk_open.hpp"
#include "vmm/machine/machine.hpp"

namespace cairn {

namespace {
bool exists(const std::string& p) {
  struct stat st {};
  return ::lstat(p.c_str(), &st) == 0;
}

// Stands behind virtio-blk while a paused VM's layer file is being merged;
// no request reaches it (the vCPUs that would send one are paused).
class ClosedDisk final : public BlockBackend {
 public:
  explicit ClosedDisk(uint64_t size) : size_(size) {}
  uint64_t size() const override { return size_; }
  bool read_only() const override { return false; }
  Result<void> read(uint64_t, std::span<uint8_t>) override { return closed(); }
  Result<void> write(uint64_t, std::span<const uint8_t>) override { return closed(); }
  Result<void> flush() override { return closed(); }
  Result<void> discard(uint64_t, uint64_t) override { return closed(); }
  Result<void> write_zeroes(uint64_t, uint64_t) override { return closed(); }
  std::string id() const override { return {}; }

 private:
  static Result<void> closed() { return fail(Errc::invalid_state, "the disk is being merged"); }
  uint64_t size_;
};

// Copies `blocks` of raw disk `raw` again into `copy`, a cairn copy of it
// made after write tracking began (a write is noted once it has landed, so
// a block copied after it was noted holds at least that write).
Result<void> copy_blocks(RawFileBackend& raw, disk::Chain& copy, const std::vector<uint64_t>& blocks) {
  const uint64_t bs = copy.block_size();
  std::vector<uint8_t> buf(bs);
  for (uint64_t b : blocks) {
    const uint64_t off = b * bs;
    if (off >= raw.size()) continue;
    auto piece = std::span(buf).first(static_cast<size_t>(std::min<uint64_t>(bs, raw.size() - off)));
    if (auto r = raw.read(off, piece); !r) return std::unexpected(r.error());
    auto r = all_zero(piece) ? copy.write_zeroes(off, piece.size()) : copy.write(off, piece);
    if (!r) return std::unexpected(r.error());
  }
  return copy.flush();
}

// The copy of raw disk `raw` at `import_path`, made while the guest ran and
// now brought up to date with the blocks written meanwhile (they are still
// tracked after this).
Result<std::unique_ptr<disk::Chain>> open_precopy(RawFileBackend& raw, const std::string& import_path, uint64_t& patched) {
  const uint64_t bs = raw.tracked_block_size();
  auto chain = disk::open_chain(import_path, true);
  if (!chain) return std::unexpected(chain.error());
  if ((*chain)->size() != raw.size() || (*chain)->block_size() != bs || (*chain)->layers().size() != 1)
    return fail(Errc::invalid_argument, "{} is not a copy of this raw disk ({} bytes in blocks of {})", import_path,
                raw.size(), bs);
  auto blocks = raw.take_written_blocks(true);
  if (auto r = copy_blocks(raw, **chain, blocks); !r) return std::unexpected(r.error());
  patched = blocks.size();
  return chain;
}
}  // namespace

Result<void> Machine::track_disk_writes(size_t slot) {
  if (slot >= disks_.size()) return fail(Errc::invalid_argument, "the VM has no disk {}", slot);
  auto* raw = dynamic_cast<RawFileBackend*>(disks_[slot].get());
  if (!raw || raw->read_only())
    return fail(Errc::invalid_argument, "disk {} ({}) is not a writable raw image", slot, cfg_.disks[slot].path);
  raw->track_writes(uint64_t{1} << disk::kDefaultBlockShift);
  return {};
}

Result<void> Machine::replace_disk(size_t slot, std::shared_ptr<BlockBackend> backend) {
  if (auto r = blocks_[slot]->replace_backend(backend); !r) return r;
  disks_[slot] = std::move(backend);
  return {};
}

void Machine::close_disk(size_t slot) {
  auto placeholder = std::make_shared<ClosedDisk>(disks_[slot]->size());
  (void)blocks_[slot]->replace_backend(placeholder);  // same size, writable: cannot fail
  disks_[slot] = std::move(placeholder);
}

PreparedDiskFreeze::PreparedDiskFreeze() = default;
PreparedDiskFreeze::PreparedDiskFreeze(PreparedDiskFreeze&&) noexcept = default;
PreparedDiskFreeze& PreparedDiskFreeze::operator=(PreparedDiskFreeze&&) noexcept = default;
PreparedDiskFreeze::~PreparedDiskFreeze() {
  for (auto& d : disks)
    if (d.child) {
      d.child.reset();
      ::unlink(d.plan.new_top.c_str());
    }
}

namespace {
Result<void> check_plan_entry(const DiskFreeze& f, const MachineConfig& cfg, size_t disks) {
  if (f.slot >= disks) return fail(Errc::invalid_argument, "the VM has no disk {}", f.slot);
  if (cfg.disks[f.slot].read_only)
    return fail(Errc::invalid_argument, "disk {} ({}) is read-only: it needs no frozen layer", f.slot,
                cfg.disks[f.slot].path);
  if (f.new_top.empty() || exists(f.new_top)) return fail(Errc::invalid_argument, "bad new layer '{}'", f.new_top);
  return {};
}
}  // namespace

Result<PreparedDiskFreeze> Machine::prepare_disk_freeze(const std::vector<DiskFreeze>& plan) {
  std::lock_guard one_at_a_time(checkpoint_mu_);
  return prepare_disks(plan);
}

Result<PreparedDiskFreeze> Machine::prepare_disks(const std::vector<DiskFreeze>& plan) {
  PreparedDiskFreeze prep;
  for (auto& f : plan) {
    if (auto r = check_plan_entry(f, cfg_, disks_.size()); !r) return std::unexpected(r.error());
    PreparedDiskFreeze::Disk d{f, nullptr, nullptr, 0};
    auto failed = [&](Error e) -> Result<PreparedDiskFreeze> {
      return std::unexpected(std::move(e).context(fmt::format("disk {}", cfg_.disks[f.slot].path)));
    };
    auto* raw = dynamic_cast<RawFileBackend*>(disks_[f.slot].get());
    if (auto* layered = dynamic_cast<disk::DiskBackend*>(disks_[f.slot].get())) {
      auto child = layered->chain().prepare_child(f.new_top);
      if (!child) return failed(std::move(child.error()));
      d.child = std::move(*child);
    } else if (raw && f.precopied && raw->tracking() && !f.import_path.empty()) {
      auto copy = open_precopy(*raw, f.import_path, d.live_patched);
      if (!copy) return failed(std::move(copy.error()));
      auto child = (*copy)->prepare_child(f.new_top);
      if (!child) return failed(std::move(child.error()));
      d.import = std::move(*copy);
      d.child = std::move(*child);
    }
    // Anything else (a raw disk without a pre-copy) is copied in the pause.
    prep.disks.push_back(std::move(d));
  }
  return prep;
}

Result<std::vector<FrozenDisk>> Machine::freeze_disks_paused(PreparedDiskFreeze& prep) {
  // The layer files prepared already exist; the others must not.
  for (auto& d : prep.disks)
    if (!d.child)
      if (auto r = check_plan_entry(d.plan, cfg_, disks_.size()); !r) return std::unexpected(r.error());
  // Puts `path` back behind disk `slot` (read-write).
  auto reopen = [this](size_t slot, const std::string& path) -> Result<void> {
    auto b = open_disk(DiskConfig{path, false});
    if (!b) return std::unexpected(b.error());
    if (auto r = replace_disk(slot, std::move(*b)); !r) return r;
    cfg_.disks[slot].path = path;
    return {};
  };
  // How to put a switched disk back when a later one fails, so that the VM
  // and the caller's records keep agreeing.
  struct Undo {
    size_t slot;
    std::string old_path;
    std::shared_ptr<BlockBackend> old_backend;  // null: the chain gained a child (pop it)
    std::vector<std::string> remove;
  };
  std::vector<FrozenDisk> done;
  std::vector<Undo> undo;
  auto roll_back = [&](Error e) -> Result<std::vector<FrozenDisk>> {
    for (auto it = undo.rbegin(); it != undo.rend(); ++it) {
      bool back = false;
      if (it->old_backend) {
        back = bool(replace_disk(it->slot, it->old_backend));
      } else if (auto* layered = dynamic_cast<disk::DiskBackend*>(disks_[it->slot].get())) {
        back = bool(layered->chain().pop_child());
      }
      if (!back) continue;  // the VM writes the new layer on: keep the files it needs
      cfg_.disks[it->slot].path = it->old_path;
      for (auto& p : it->remove) ::unlink(p.c_str());
    }
    return std::unexpected(std::move(e));
  };
  using clock = std::chrono::steady_clock;
  auto ms = [](clock::time_point a, clock::time_point b) { return std::chrono::duration<double, std::milli>(b - a).count(); };
  for (auto& d : prep.disks) {
    const DiskFreeze& f = d.plan;
    const std::string top = cfg_.disks[f.slot].path;
    const auto t0 = clock::now();
    // (A pre-copied raw file is only read from here on: its copy is what must be durable.)
    if (!d.import)
      if (auto r = disks_[f.slot]->flush(); !r)
        return roll_back(std::move(r.error()).context(fmt::format("flushing disk {}", top)));
    const auto t_flushed = clock::now();
    FrozenDisk fd{f.slot, top, f.new_top, ms(t0, t_flushed), 0, 0, 0, d.live_patched};
    auto* layered = dynamic_cast<disk::DiskBackend*>(disks_[f.slot].get());
    auto* raw_file = dynamic_cast<RawFileBackend*>(disks_[f.slot].get());
    auto changed = [&] {
      return roll_back(Error{Errc::invalid_state, fmt::format("disk {} changed since its freeze was prepared", top)});
    };
    if (d.child && d.import) {
      // A pre-copied raw disk: the last blocks written, then the copy with
      // its new child replaces the raw file, which is not written again.
      if (!raw_file || !raw_file->tracking()) return changed();
      auto blocks = raw_file->take_written_blocks();
      if (auto r = copy_blocks(*raw_file, *d.import, blocks); !r)
        return roll_back(std::move(r.error()).context(fmt::format("bringing {} up to date", f.import_path)));
      fd.patched_blocks = blocks.size();
      const auto t_imported = clock::now();
      if (auto r = d.import->push_child(std::move(d.child)); !r)
        return roll_back(std::move(r.error()).context(fmt::format("freezing disk {}", top)));
      auto old = disks_[f.slot];
      if (auto r = replace_disk(f.slot, std::make_shared<disk::DiskBackend>(std::move(d.import), false)); !r) {
        ::unlink(f.new_top.c_str());
        return roll_back(std::move(r.error()).context(fmt::format("freezing disk {}", top)));
      }
      cfg_.disks[f.slot].path = f.new_top;
      undo.push_back({f.slot, top, std::move(old), {f.new_top, f.import_path}});
      fd.frozen = f.import_path;
      fd.import_ms = ms(t_flushed, t_imported);
      fd.relayer_ms = ms(t_imported, clock::now());
    } else if (d.child) {
      if (!layered) return changed();
      if (auto r = layered->chain().push_child(std::move(d.child)); !r) {
        ::unlink(f.new_top.c_str());
        return roll_back(std::move(r.error()).context(fmt::format("freezing disk {}", top)));
      }
      cfg_.disks[f.slot].path = f.new_top;
      undo.push_back({f.slot, top, nullptr, {f.new_top}});
      fd.relayer_ms = ms(t_flushed, clock::now());
    } else {
      // Not prepared: a raw image without a pre-copy is copied whole now
      // (a raw image cannot be a parent layer: the checkpoint keeps a cairn
      // copy and the raw file is not written again).
      if (layered) return roll_back(Error{Errc::invalid_state, fmt::format("disk {} was not prepared", top)});
      if (f.import_path.empty())
        return roll_back(
            Error{Errc::invalid_argument, fmt::format("disk {} ({}) is raw and no import path was given", f.slot, top)});
      auto old = disks_[f.slot];
      // The writable session on the raw file ends before it is copied.
      close_disk(f.slot);
      ::unlink(f.import_path.c_str());  // a pre-copy this VMM cannot complete
      auto made = disk::convert_raw_to_cairn(top, f.import_path);
      const auto t_imported = clock::now();
      if (made) made = disk::create_child_of_top(f.import_path, f.new_top);  // reopen() checks the whole chain
      if (made) made = reopen(f.slot, f.new_top);
      if (!made) {
        ::unlink(f.new_top.c_str());
        ::unlink(f.import_path.c_str());
        (void)replace_disk(f.slot, old);
        return roll_back(std::move(made.error()).context(fmt::format("freezing disk {}", top)));
      }
      undo.push_back({f.slot, top, std::move(old), {f.new_top, f.import_path}});
      fd.frozen = f.import_path;
      fd.import_ms = ms(t_flushed, t_imported);
      fd.relayer_ms = ms(t_imported, clock::now());
    }
    done.push_back(std::move(fd));
  }
  return done;
}

Result<DiskFreezeResult> Machine::freeze_disks(PreparedDiskFreeze& prep) {
  std::lock_guard one_at_a_time(checkpoint_mu_);
  bool pause_here = running_unpaused();
  const auto t0 = std::chrono::steady_clock::now();
  if (pause_here) pause();
  const auto t_paused = std::chrono::steady_clock::now();
  std::vector<VsockDevice*> paused_vsock;
  for (auto& d : virtio_devices_)
    if (auto* vs = dynamic_cast<VsockDevice*>(d.get())) {
      vs->pause();
      paused_vsock.push_back(vs);
    }
  auto r = freeze_disks_paused(prep);
  for (auto* v : paused_vsock) v->resume();
  if (pause_here) resume();
  if (!r) return std::unexpected(r.error());
  const auto t1 = std::chrono::steady_clock::now();
  return DiskFreezeResult{std::move(*r), std::chrono::duration<double, std::milli>(t_paused - t0).count(),
                          std::chrono::duration<double, std::milli>(t1 - t_paused).count()};
}

Result<void> Machine::merge_disk_layers(size_t slot, const std::string& parent, const std::string& child) {
  std::lock_guard one_at_a_time(checkpoint_mu_);
  if (slot >= disks_.size()) return fail(Errc::invalid_argument, "the VM has no disk {}", slot);
  auto* layered = dynamic_cast<disk::DiskBackend*>(disks_[slot].get());
  if (!layered) return fail(Errc::invalid_argument, "disk {} is a raw image: it has no layers", slot);
  const auto& layers = layered->chain().layers();
  std::error_code ec;
  bool found = false;
  for (size_t i = 0; i + 1 < layers.size() && !found; ++i)
    found = std::filesystem::equivalent(layers[i]->path(), child, ec) &&
            std::filesystem::equivalent(layers[i + 1]->path(), parent, ec);
  if (!found)
    return fail(Errc::invalid_state, "disk {} has no layer {} over {}", slot, child, parent);
  bool pause_here = running_unpaused();
  if (pause_here) pause();
  const std::string top = cfg_.disks[slot].path;
  auto result = [&]() -> Result<void> {
    if (auto r = disks_[slot]->flush(); !r) return r;
    // The merge needs the layers to itself (our session locks them): close
    // the chain, merge, reopen. A merge that fails half-way is finished or
    // kept consistent by the next open (merge_into_child is resumable).
    close_disk(slot);
    auto merged = disk::merge_into_child(parent, child);
    auto reopened = open_disk(DiskConfig{top, false});
    if (!reopened) return std::unexpected(std::move(reopened.error()).context("reopening the disk after a merge"));
    if (auto r = replace_disk(slot, std::move(*reopened)); !r) return r;
    if (!merged)
      return std::unexpected(std::move(merged.error()).context(fmt::format("merging {} into {}", parent, child)));
    return {};
  }();
  if (pause_here) resume();
  return result;
}

}  // namespace cairn
