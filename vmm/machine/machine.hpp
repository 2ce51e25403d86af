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
class VirtioDevice;
class InterruptLine;

// How a VM ended.
struct MachineExit {
  enum class Kind { poweroff, reboot, crash, stopped, error } kind = Kind::poweroff;
  int status = 0;       // the guest command's exit status (debug-exit port), poweroff only
  std::string detail;   // why, for crash and error
};

namespace snap {
struct DeviceStates;
struct MachineState;
}  // namespace snap

// What a standard checkpoint cost (vmm/machine/machine_snapshot.cpp).
struct CheckpointStats {
  uint64_t guest_memory_bytes = 0;
  uint64_t memory_file_bytes = 0;  // the compressed memory image
  uint64_t state_file_bytes = 0;   // vCPU, VM and device state
  uint64_t stored_pages = 0;       // non-zero pages written
  uint64_t zero_pages = 0;
  double paused_ms = 0;            // how long the guest was stopped
  double total_ms = 0;
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

  // Standard checkpoint (format: docs/checkpoint-format.md): pauses the
  // guest, saves vCPU, VM, device state and RAM into the new folder `dir`
  // (it appears complete or not at all), then resumes a running guest.
  Result<CheckpointStats> save_checkpoint(const std::string& dir);
  // A machine in the state saved in `dir`, ready for run() to continue the
  // guest. `cfg` must describe the same machine (memory, vCPUs, devices).
  static Result<std::unique_ptr<Machine>> restore(const std::string& dir, const MachineConfig& cfg);

 private:
  Machine() = default;
  // KVM, the VM and guest memory.
  Result<void> init_vm();
  // Fresh devices, or (restore) devices rebuilt from saved state.
  Result<void> setup_devices(const snap::DeviceStates* saved = nullptr);
  // `boot`: load the kernel and set the boot registers (not when restoring).
  Result<void> setup_vcpus(bool boot = true);
  Result<snap::MachineState> capture_state();
  void vcpu_loop(unsigned index);
  void handle_pio(VcpuFd& v);
  void handle_mmio(VcpuFd& v);
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
  std::vector<std::shared_ptr<InterruptLine>> irq_lines_;
  std::vector<std::shared_ptr<VirtioDevice>> virtio_devices_;
  std::vector<std::shared_ptr<MmioTransport>> transports_;

  std::mutex mu_;
  std::condition_variable cv_;
  bool pause_requested_ = false;
  bool paused_ = false;
  unsigned parked_ = 0;
  std::atomic<bool> stop_requested_{false};
  std::optional<MachineExit> exit_;
  std::mutex checkpoint_mu_;  // one checkpoint at a time
};

}  // namespace cairn
