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
class MmioTransport;
class VirtioDevice;
class InterruptLine;

// How a VM ended.
struct MachineExit {
  enum class Kind { poweroff, reboot, crash, stopped, error } kind = Kind::poweroff;
  int status = 0;       // the guest command's exit status (debug-exit port), poweroff only
  std::string detail;   // why, for crash and error
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

 private:
  Machine() = default;
  Result<void> setup_devices();
  Result<void> setup_vcpus();
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
};

}  // namespace cairn
