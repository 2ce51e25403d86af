// A running VM: KVM objects, guest memory, buses and devices, one thread per
// vCPU, and the pause/resume protocol that checkpoints rely on.
#pragma once
#include <pthread.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "devices/bus.hpp"
#include "snapshot/memory/cow_saver.hpp"
#include "snapshot/memory/lazy_loader.hpp"
#include "vmm/base/error.hpp"
#include "vmm/base/guest_memory.hpp"
#include "vmm/kvm/kvm_system.hpp"
#include "vmm/kvm/vcpu_fd.hpp"
#include "vmm/kvm/vm_fd.hpp"
#include "vmm/machine/console.hpp"
#include "vmm/machine/machine_config.hpp"

namespace cairn {

class Serial8250;
class I8042;
class BlockBackend;
class MmioTransport;
class VirtioBlock;
class VirtioDevice;
class InterruptLine;

// How a VM ended.
struct MachineExit {
  enum class Kind { poweroff, reboot, crash, stopped, error } kind = Kind::poweroff;
  int status = 0;       // the guest command's exit status (debug-exit port), poweroff only
  std::string detail;   // why, for crash and error
  Errc code = Errc::failed;  // error only: what kind (a damaged checkpoint is Errc::corrupt)
};

namespace disk {
class Chain;
class Layer;
}  // namespace disk

namespace snap {
class MemoryImageWriter;
struct DeviceStates;
struct MachineState;
}  // namespace snap

// One writable disk's share of a checkpoint (vmm/machine/machine_disks.cpp):
// its current top layer is frozen and the VM goes on in a new child layer.
struct DiskFreeze {
  size_t slot = 0;          // index in MachineConfig::disks
  std::string new_top;      // the new running layer to create (must not exist)
  std::string import_path;  // a raw disk is first copied here as a cairn base layer
  // import_path already holds a copy made while the guest ran, after
  // track_disk_writes(slot): only the blocks written since are copied in the
  // pause (when this VMM has no such record, the whole disk is copied).
  bool precopied = false;
};
// A disk freeze made ready while the guest runs (Machine::prepare_disk_freeze):
// every new top layer is already created, opened and durable, and a
// pre-copied raw disk's copy brought up to date, so that the pause only
// switches each disk to its new layer. Dropped unused, it removes the new
// layers (a raw disk's copy stays, good for another try).
class PreparedDiskFreeze {
 public:
  struct Disk {
    DiskFreeze plan;
    std::unique_ptr<disk::Layer> child;   // the new top, open for writing; null: made in the pause
    std::unique_ptr<disk::Chain> import;  // a pre-copied raw disk's copy, open for writing
    uint64_t live_patched = 0;            // its blocks copied again before the pause
  };
  PreparedDiskFreeze();
  PreparedDiskFreeze(PreparedDiskFreeze&&) noexcept;
  PreparedDiskFreeze& operator=(PreparedDiskFreeze&&) noexcept;
  ~PreparedDiskFreeze();
  std::vector<Disk> disks;
};

struct FrozenDisk {
  size_t slot = 0;
  std::string frozen;   // the layer that now belongs to the checkpoint
  std::string new_top;  // the layer the VM writes from now on
  // Where the pause went, for this disk.
  double flush_ms = 0;    // making the old top durable
  double import_ms = 0;   // a raw disk's changes since its pre-copy, into its base layer
  double relayer_ms = 0;  // putting the new top over the old one
  uint64_t patched_blocks = 0;  // a pre-copied raw disk's blocks copied again in the pause
  uint64_t live_patched_blocks = 0;  // ... and just before it, while the guest ran
};
// freeze_disks' result: the disks and what the guest's pause cost.
struct DiskFreezeResult {
  std::vector<FrozenDisk> frozen;
  double pause_ms = 0;   // stopping the vCPUs
  double paused_ms = 0;  // from stopped to running again
};

// What a standard checkpoint cost (vmm/machine/machine_snapshot.cpp).
struct CheckpointStats {
  uint64_t guest_memory_bytes = 0;
  uint64_t memory_file_bytes = 0;  // the compressed memory image
  uint64_t state_file_bytes = 0;   // vCPU, VM and device state
  uint64_t stored_pages = 0;       // non-zero pages written
  uint64_t zero_pages = 0;
  double paused_ms = 0;            // how long the guest was stopped
  double total_ms = 0;
  std::string memory_copy = "paused";  // copy-on-write, pre-copy or paused (host_check.hpp)
  double live_copy_ms = 0;         // memory copied while the guest ran (0: not running)
  unsigned live_rounds = 0;        // pre-copy: passes before the pause (the first stores every chunk)
  uint64_t cow_fault_chunks = 0;   // copy-on-write: chunks a guest write had to wait for
  std::string memory_copy_note;    // why a running guest's RAM was copied in the pause instead
  uint64_t paused_chunks = 0;      // memory chunks stored during the pause
  double pause_ms = 0;             // of paused_ms: stopping the vCPUs
  double state_ms = 0;             //   reading vCPU, VM and device state
  double memory_ms = 0;            //   storing memory chunks (copy-on-write: protecting them)
  uint64_t compacted_bytes = 0;    // earlier copies of chunks stored again, removed from the file
  bool memory_verified = false;    // CAIRN_VERIFY_MEMORY=1: the image equals the paused guest's RAM
  bool incremental = false;        // only the chunks written since the last checkpoint were stored
  uint64_t parent_chunks = 0;      // ... the others refer to its image
  std::vector<FrozenDisk> frozen;  // the disks frozen in the same pause
};

class Machine {
 public:
  static Result<std::unique_ptr<Machine>> create(const MachineConfig& cfg);
  ~Machine();

  // Starts the vCPUs and blocks until the VM ends.
  MachineExit run();

  // Stops every vCPU at an instruction boundary with no PIO/MMIO exit left
  // half-done. Idempotent; safe from any thread but a vCPU's.
  void pause();
  void resume();
  bool paused() const { return paused_; }
  // Ends run() with the given outcome (first request wins).
  void request_stop(MachineExit exit);

  GuestMemory& memory() { return memory_; }
  const MachineConfig& config() const { return cfg_; }
  // The full kernel command line the guest booted with.
  const std::string& kernel_cmdline() const { return cmdline_; }

  // Standard checkpoint (format: docs/checkpoint-format.md): saves vCPU, VM,
  // device state and RAM into the new folder `dir` (it appears complete or
  // not at all). A running guest's RAM is copied while it runs; the guest is
  // paused only to store what it wrote meanwhile and the small state.
  // `freeze`: disks re-layered in the same pause (see freeze_disks).
  Result<CheckpointStats> save_checkpoint(const std::string& dir, const std::vector<DiskFreeze>& freeze = {});
  // Freezes disks without saving memory (production checkpoints, disks-only
  // checkpoints): pauses unless paused, flushes, re-layers, resumes.
  // prepare_disk_freeze() does what can be done before the pause (a caller
  // may do its own work in between: the guest agent's freeze).
  Result<PreparedDiskFreeze> prepare_disk_freeze(const std::vector<DiskFreeze>& plan);
  Result<DiskFreezeResult> freeze_disks(PreparedDiskFreeze& prepared);
  // Starts noting the blocks the guest writes to raw disk `slot` (in units of
  // a cairn layer block), so that a copy of it taken from now on can be
  // completed during a checkpoint's pause (DiskFreeze::precopied).
  Result<void> track_disk_writes(size_t slot);
  // Merges layer `parent` into `child`, its child in disk `slot`'s chain (a
  // checkpoint was removed and nothing else needs `parent`), with the guest
  // paused meanwhile: the running VM holds every layer of its chain open.
  // The parent file is left for the caller.
  Result<void> merge_disk_layers(size_t slot, const std::string& parent, const std::string& child);
  // A machine in the state saved in `dir`, ready for run() to continue the
  // guest. `cfg` must describe the same machine (memory, vCPUs, devices).
  static Result<std::unique_ptr<Machine>> restore(const std::string& dir, const MachineConfig& cfg);
  // A restored machine whose RAM is still loading (lazy restore): how far it
  // got. Empty when its memory was loaded before it ran, or it was booted.
  std::optional<snap::LazyLoadStats> memory_load_stats() const;
  // Why a restore loaded RAM before the guest ran, if it did.
  const std::string& restore_note() const { return restore_note_; }
  // Blocks until a lazily restored guest's RAM is all in (at once otherwise).
  Result<void> wait_memory_loaded();

 private:
  Machine() = default;
  // KVM, the VM and guest memory.
  Result<void> init_vm();
  // Fresh devices, or (restore) devices rebuilt from saved state.
  Result<void> setup_devices(const snap::DeviceStates* saved = nullptr);
  // `boot`: load the kernel and set the boot registers (not when restoring).
  Result<void> setup_vcpus(bool boot = true);
  Result<snap::MachineState> capture_state();
  // Restore: puts the image's RAM in guest memory, lazily where the host allows.
  Result<void> start_memory_load(std::shared_ptr<const snap::MemoryImageChain> image);
  // The vCPUs run and nobody asked them to pause or stop: a checkpoint or a
  // disk operation pauses them itself (and resumes them after).
  bool running_unpaused() const;
  struct LiveCopy {
    unsigned rounds = 0;
    std::vector<size_t> pending;  // chunks written since the last pass, for the pause
  };
  static constexpr unsigned kLiveCopyMaxRounds = 6;
  static constexpr size_t kLiveCopyPausedChunks = 4;
  Result<void> verify_image(const std::string& dir, const std::vector<std::vector<uint8_t>>& expected) const;
  Result<void> live_copy_memory(snap::MemoryImageWriter& writer, bool& logging, LiveCopy& out);
  Result<std::vector<size_t>> take_dirty_chunks(const snap::MemoryImageWriter& writer, std::vector<size_t> also);
  // prepare_disk_freeze with checkpoint_mu_ held.
  Result<PreparedDiskFreeze> prepare_disks(const std::vector<DiskFreeze>& plan);
  // freeze_disks with the vCPUs already paused and device I/O drained.
  Result<std::vector<FrozenDisk>> freeze_disks_paused(PreparedDiskFreeze& prepared);
  Result<void> replace_disk(size_t slot, std::shared_ptr<BlockBackend> backend);
  // Ends the disk's backend session (its files are closed); the VM must be
  // paused until another backend replaces it.
  void close_disk(size_t slot);
  void vcpu_loop(unsigned index);
  void kick_all();
  void park(VcpuFd& v);

  MachineConfig cfg_;
  std::string cmdline_;
  std::optional<KvmSystem> kvm_;
  std::optional<VmFd> vm_;
  GuestMemory memory_;
  std::vector<VcpuFd> vcpus_;
  std::vector<std::thread> threads_;
  std::vector<pthread_t> thread_ids_;

  Bus pio_;
  Bus mmio_;
  std::unique_ptr<Console> console_;
  std::shared_ptr<Serial8250> serial_;
  std::shared_ptr<I8042> i8042_;
  std::vector<std::shared_ptr<BlockBackend>> disks_;
  std::vector<std::shared_ptr<VirtioBlock>> blocks_;  // disks_[i]'s device
  std::vector<std::shared_ptr<InterruptLine>> irq_lines_;
  std::vector<std::shared_ptr<VirtioDevice>> virtio_devices_;
  std::vector<std::shared_ptr<MmioTransport>> transports_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool pause_requested_ = false;
  bool paused_ = false;
  unsigned parked_ = 0;
  std::atomic<bool> stop_requested_{false};
  std::optional<MachineExit> exit_;
  std::mutex checkpoint_mu_;  // one checkpoint at a time
  std::string restore_note_;
  // The image the next checkpoint may build on (incremental), and the
  // copy-on-write saver of the last checkpoint, still noting the chunks
  // the guest writes since.
  std::string base_dir_;
  uint64_t base_image_id_ = 0;
  size_t base_depth_ = 0;  // images in the base's chain (folding may have made it fewer)
  // Last: destroyed first, once the vCPU threads are joined, while the guest
  // memory they protect or fill is still mapped.
  std::unique_ptr<snap::CopyOnWriteSaver> tracker_;
  std::unique_ptr<snap::LazyMemoryLoader> lazy_memory_;
};

}  // namespace cairn
