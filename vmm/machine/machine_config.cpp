#include "vmm/machine/machine_config.hpp"

#include "vmm/base/guest_memory.hpp"

namespace cairn {

Result<void> validate_machine_config(const MachineConfig& cfg) {
  if (cfg.memory < kMinMemory || cfg.memory > kMaxMemory || cfg.memory % GuestMemory::kPageSize)
    return fail(Errc::invalid_argument, "memory size {} MiB is out of range ({}-{} MiB, 4 KiB multiple)",
                cfg.memory >> 20, kMinMemory >> 20, kMaxMemory >> 20);
  if (cfg.cpus < 1 || cfg.cpus > kMaxCpus)
    return fail(Errc::invalid_argument, "{} vCPUs requested; cairn supports 1 to {}", cfg.cpus, kMaxCpus);
  if (cfg.disks.size() + (cfg.vsock ? 1 : 0) > kLastVirtioGsi - kFirstVirtioGsi + 1)
    return fail(Errc::invalid_argument, "too many virtio devices");
  return {};
}
}  // namespace cairn
