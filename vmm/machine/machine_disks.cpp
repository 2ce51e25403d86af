// Re-layering a running VM's disks: freezing the top layers into a
// checkpoint, and merging a layer that no checkpoint needs any more into the
// running one. Both happen with the vCPUs paused: virtio-blk requests are
// served on vCPU threads, so a paused VM has no disk request in flight.
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>

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
}  // namespace

Result<void> Machine::replace_disk(size_t slot, std::shared_ptr<BlockBackend> backend) {
  if (auto r = blocks_[slot]->replace_backend(backend); !r) return r;
  disks_[slot] = std::move(backend);
  return {};
}

Result<std::vector<FrozenDisk>> Machine::freeze_disks_paused(const std::vector<DiskFreeze>& plan) {
  for (auto& f : plan) {
    if (f.slot >= disks_.size()) return fail(Errc::invalid_argument, "the VM has no disk {}", f.slot);
    if (cfg_.disks[f.slot].read_only)
      return fail(Errc::invalid_argument, "disk {} ({}) is read-only: it needs no frozen layer", f.slot,
                  cfg_.disks[f.slot].path);
    if (f.new_top.empty() || exists(f.new_top)) return fail(Errc::invalid_argument, "bad new layer '{}'", f.new_top);
  }
  std::vector<FrozenDisk> done;
  // Undo what was switched already when a later disk fails, so that the VM
  // and the caller's records keep agreeing.
  auto roll_back = [&] {
    for (auto it = done.rbegin(); it != done.rend(); ++it) {
      DiskConfig old{it->frozen, false};
      disks_[it->slot].reset();
      if (auto b = open_disk(old)) {
        (void)replace_disk(it->slot, std::move(*b));
        cfg_.disks[it->slot].path = it->frozen;
      }
      ::unlink(it->new_top.c_str());
    }
  };
  for (auto& f : plan) {
    const std::string top = cfg_.disks[f.slot].path;
    if (auto r = disks_[f.slot]->flush(); !r) {
      roll_back();
      return std::unexpected(std::move(r.error()).context(fmt::format("flushing disk {}", top)));
    }
    std::string frozen = top;
    if (!dynamic_cast<disk::DiskBackend*>(disks_[f.slot].get())) {
      // A raw image cannot be a parent layer: the checkpoint keeps a cairn
      // copy of it and the raw file is not written again.
      if (f.import_path.empty()) {
        roll_back();
        return fail(Errc::invalid_argument, "disk {} ({}) is raw and no import path was given", f.slot, top);
      }
      if (auto r = disk::convert_raw_to_cairn(top, f.import_path); !r) {
        roll_back();
        return std::unexpected(std::move(r.error()).context(fmt::format("importing raw disk {}", top)));
      }
      frozen = f.import_path;
    }
    // The writable session on the old top ends before the child records the
    // top's identity, so that the identity is final.
    std::shared_ptr<BlockBackend> old = disks_[f.slot];
    auto child = disk::create_child(frozen, f.new_top);
    if (!child) {
      roll_back();
      return std::unexpected(std::move(child.error()).context(fmt::format("disk {}", f.slot)));
    }
    auto next = open_disk(DiskConfig{f.new_top, false});
    if (!next) {
      ::unlink(f.new_top.c_str());
      roll_back();
      return std::unexpected(next.error());
    }
    if (auto r = replace_disk(f.slot, std::move(*next)); !r) {
      ::unlink(f.new_top.c_str());
      roll_back();
      return std::unexpected(r.error());
    }
    old.reset();  // closes the frozen layer's writable session
    cfg_.disks[f.slot].path = f.new_top;
    done.push_back({f.slot, frozen, f.new_top});
  }
  return done;
}

Result<std::vector<FrozenDisk>> Machine::freeze_disks(const std::vector<DiskFreeze>& plan) {
  std::lock_guard one_at_a_time(checkpoint_mu_);
  bool pause_here = false;
  {
    std::lock_guard lk(mu_);
    pause_here = !threads_.empty() && !stop_requested_ && !pause_requested_;
  }
  if (pause_here) pause();
  std::vector<VsockDevice*> paused_vsock;
  for (auto& d : virtio_devices_)
    if (auto* vs = dynamic_cast<VsockDevice*>(d.get())) {
      vs->pause();
      paused_vsock.push_back(vs);
    }
  auto r = freeze_disks_paused(plan);
  for (auto* v : paused_vsock) v->resume();
  if (pause_here) resume();
  return r;
}

Result<void> Machine::absorb_disk_parent(size_t slot, const std::string& parent) {
  std::lock_guard one_at_a_time(checkpoint_mu_);
  if (slot >= disks_.size()) return fail(Errc::invalid_argument, "the VM has no disk {}", slot);
  auto* layered = dynamic_cast<disk::DiskBackend*>(disks_[slot].get());
  if (!layered) return fail(Errc::invalid_argument, "disk {} is a raw image: it has no parent layer", slot);
  const auto& layers = layered->chain().layers();
  std::error_code ec;
  if (layers.size() < 2 || !std::filesystem::equivalent(layers[1]->path(), parent, ec))
    return fail(Errc::invalid_state, "the parent layer of disk {} is not {}", slot, parent);
  bool pause_here = false;
  {
    std::lock_guard lk(mu_);
    pause_here = !threads_.empty() && !stop_requested_ && !pause_requested_;
  }
  if (pause_here) pause();
  const std::string top = cfg_.disks[slot].path;
  auto result = [&]() -> Result<void> {
    if (auto r = disks_[slot]->flush(); !r) return r;
    // The merge needs the top to itself: close our session, merge, reopen.
    // If the merge fails half-way, reopening the top finishes or keeps it
    // consistent (merge_into_child is resumable).
    std::shared_ptr<BlockBackend> closed = std::move(disks_[slot]);
    if (auto r = blocks_[slot]->replace_backend(std::make_shared<ClosedDisk>(closed->size())); !r) return r;
    closed.reset();
    auto merged = disk::merge_into_child(parent, top);
    auto reopened = open_disk(DiskConfig{top, false});
    if (!reopened) return std::unexpected(std::move(reopened.error()).context("reopening the disk after a merge"));
    if (auto r = replace_disk(slot, std::move(*reopened)); !r) return r;
    if (!merged) return std::unexpected(std::move(merged.error()).context(fmt::format("merging {} into {}", parent, top)));
    return {};
  }();
  if (pause_here) resume();
  return result;
}

}  // namespace cairn
