// Everything of a checkpoint except guest RAM: the machine's configuration,
// VM and vCPU state and device state, stored as sections of the state
// container (container.hpp). Section types and payloads:
//
//   type  instance  payload
//   1     0         machine config, JSON: {"memory": bytes, "cpus": n,
//                   "disks": [{"read_only": bool, "size": bytes}, ...],
//                   "vsock_cid": n or null, "kernel_cmdline": "..."}
//   2     0         device state, JSON (device_state.hpp)
//   16    0         PIC master: struct kvm_irqchip (520 bytes, <linux/kvm.h> layout)
//   17    0         PIC slave: struct kvm_irqchip
//   18    0         IOAPIC: struct kvm_irqchip
//   19    0         PIT: struct kvm_pit_state2 (112 bytes)
//   20    0         kvmclock: struct kvm_clock_data (48 bytes)
//   32    vCPU      struct kvm_regs (144 bytes)
//   33    vCPU      struct kvm_sregs (312 bytes)
//   34    vCPU      XSAVE area (KVM_GET_XSAVE2 bytes, >= 4096, <= 1 MiB)
//   35    vCPU      struct kvm_xcrs (392 bytes)
//   36    vCPU      MSRs: n * struct kvm_msr_entry (16 bytes: u32 index, u32 0, u64 data), n <= 4096
//   37    vCPU      struct kvm_lapic_state (1024 bytes)
//   38    vCPU      struct kvm_vcpu_events (64 bytes)
//   39    vCPU      struct kvm_debugregs (128 bytes)
//   40    vCPU      struct kvm_mp_state (4 bytes)
//   41    vCPU      TSC frequency: u32 kHz
//
// Each section appears exactly once (per vCPU for types 32-41, instance 0 ..
// cpus-1); any other type, a missing or repeated section or a wrong size is
// Errc::corrupt. The KVM structs are the kernel's stable x86-64 ABI; a change
// to any of them would come with a new container version.
#pragma once
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "snapshot/state/device_state.hpp"
#include "snapshot/state/vcpu_state.hpp"

namespace cairn::snap {

enum SectionType : uint32_t {
  kSecConfig = 1,
  kSecDevices = 2,
  kSecPicMaster = 16,
  kSecPicSlave = 17,
  kSecIoapic = 18,
  kSecPit = 19,
  kSecClock = 20,
  kSecRegs = 32,
  kSecSregs = 33,
  kSecXsave = 34,
  kSecXcrs = 35,
  kSecMsrs = 36,
  kSecLapic = 37,
  kSecEvents = 38,
  kSecDebugregs = 39,
  kSecMpState = 40,
  kSecTscKhz = 41,
};

struct SavedDisk {
  bool read_only = false;
  uint64_t size = 0;
  bool operator==(const SavedDisk&) const = default;
};

// What must match between the checkpointed machine and the one restoring it.
struct SavedConfig {
  uint64_t memory = 0;
  unsigned cpus = 0;
  std::vector<SavedDisk> disks;
  std::optional<uint64_t> vsock_cid;
  std::string kernel_cmdline;
};

struct MachineState {
  SavedConfig config;
  VmState vm;
  std::vector<VcpuState> vcpus;  // config.cpus entries
  DeviceStates devices;
};

inline constexpr unsigned kStateMaxCpus = 256;
inline constexpr size_t kStateMaxXsaveBytes = 1 << 20;
inline constexpr size_t kStateMaxMsrs = 4096;

Result<std::vector<uint8_t>> encode_machine_state(const MachineState& s);
Result<MachineState> decode_machine_state(std::span<const uint8_t> file, const std::string& what);

}  // namespace cairn::snap
