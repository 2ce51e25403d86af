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

// Completes a copy of raw disk `raw` made into the base layer `import_path`
// while the guest ran: the blocks written since tracking began are copied
// again, now that no write is in flight.
Result<uint64_t> finish_precopy(RawFileBackend& raw, const std::string& import_path) {
  const uint64_t bs = raw.tracked_block_size();
  auto blocks = raw.take_written_blocks();
  auto chain = disk::open_chain(import_path, true);
  if (!chain) return std::unexpected(chain.error());
  if ((*chain)->size() != raw.size() || (*chain)->block_size() != bs || (*chain)->layers().size() != 1)
    return fail(Errc::invalid_argument, "{} is not a copy of this raw disk ({} bytes in blocks of {})", import_path,
                raw.size(), bs);
  std::vector<uint8_t> buf(bs);
  for (uint64_t b : blocks) {
    const uint64_t off = b * bs;
    if (off >= raw.size()) continue;
    auto piece = std::span(buf).first(static_cast<size_t>(std::min<uint64_t>(bs, raw.size() - off)));
    if (auto r = raw.read(off, piece); !r) return std::unexpected(r.error());
    const bool zero = std::all_of(piece.begin(), piece.end(), [](uint8_t x) { return x == 0; });
    auto r = zero ? (*chain)->write_zeroes(off, piece.size()) : (*chain)->write(off, piece);
    if (!r) return std::unexpected(r.error());
  }
  if (auto r = (*chain)->flush(); !r) return std::unexpected(r.error());
  return blocks.size();
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

Result<std::vector<FrozenDisk>> Machine::freeze_disks_paused(const std::vector<DiskFreeze>& plan) {
  for (auto& f : plan) {
    if (f.slot >= disks_.size()) return fail(Errc::invalid_argument, "the VM has no disk {}", f.slot);
    if (cfg_.disks[f.slot].read_only)
      return fail(Errc::invalid_argument, "disk {} ({}) is read-only: it needs no frozen layer", f.slot,
                  cfg_.disks[f.slot].path);
    if (f.new_top.empty() || exists(f.new_top)) return fail(Errc::invalid_argument, "bad new layer '{}'", f.new_top);
  }
  // Puts `path` back behind disk `slot` (read-write).
  auto reopen = [this](size_t slot, const std::string& path) -> Result<void> {
    auto b = open_disk(DiskConfig{path, false});
    if (!b) return std::unexpected(b.error());
    if (auto r = replace_disk(slot, std::move(*b)); !r) return r;
    cfg_.disks[slot].path = path;
    return {};
  };
  std::vector<FrozenDisk> done;
  // Undoes the disks switched already when a later one fails, so that the
  // VM and the caller's records keep agreeing.
  auto roll_back = [&](Error e) -> Result<std::vector<FrozenDisk>> {
    for (auto it = done.rbegin(); it != done.rend(); ++it) {
      close_disk(it->slot);
      if (reopen(it->slot, it->frozen)) ::unlink(it->new_top.c_str());
    }
    return std::unexpected(std::move(e));
  };
  using clock = std::chrono::steady_clock;
  auto ms = [](clock::time_point a, clock::time_point b) { return std::chrono::duration<double, std::milli>(b - a).count(); };
  for (auto& f : plan) {
    const std::string top = cfg_.disks[f.slot].path;
    const auto t0 = clock::now();
    if (auto r = disks_[f.slot]->flush(); !r)
      return roll_back(std::move(r.error()).context(fmt::format("flushing disk {}", top)));
    const auto t_flushed = clock::now();
    const bool raw = !dynamic_cast<disk::DiskBackend*>(disks_[f.slot].get());
    auto* raw_file = dynamic_cast<RawFileBackend*>(disks_[f.slot].get());
    std::string frozen = top;
    Result<void> made;
    bool copy_all = false;
    uint64_t patched = 0;
    if (raw) {
      // A raw image cannot be a parent layer: the checkpoint keeps a cairn
      // copy of it and the raw file is not written again.
      frozen = f.import_path;
      if (f.import_path.empty())
        made = fail(Errc::invalid_argument, "disk {} ({}) is raw and no import path was given", f.slot, top);
      else if (f.precopied && raw_file && raw_file->tracking()) {
        auto n = finish_precopy(*raw_file, f.import_path);
        if (n) patched = *n;
        else made = std::unexpected(n.error());
      } else
        copy_all = true;
    }
    // The writable session on the old top ends before the child is made: its
    // layer lock is released and the identity the child records is final.
    close_disk(f.slot);
    if (made && copy_all) {
      ::unlink(f.import_path.c_str());  // a pre-copy this VMM cannot complete
      made = disk::convert_raw_to_cairn(top, f.import_path);
    }
    const auto t_imported = clock::now();
    if (made) made = disk::create_child_of_top(frozen, f.new_top);  // reopen() checks the whole chain
    if (made) made = reopen(f.slot, f.new_top);
    if (!made) {
      ::unlink(f.new_top.c_str());
      if (raw) ::unlink(f.import_path.c_str());
      if (auto r = reopen(f.slot, top); !r)
        return roll_back(std::move(r.error()).context(fmt::format("reopening disk {} after: {}", top, made.error().message)));
      return roll_back(std::move(made.error()).context(fmt::format("freezing disk {}", top)));
    }
    done.push_back(
        {f.slot, frozen, f.new_top, ms(t0, t_flushed), ms(t_flushed, t_imported), ms(t_imported, clock::now()), patched});
  }
  return done;
}

Result<DiskFreezeResult> Machine::freeze_disks(const std::vector<DiskFreeze>& plan) {
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
  auto r = freeze_disks_paused(plan);
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
