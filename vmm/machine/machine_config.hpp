// What a VM is made of: the options of `cairn run` and `cairn vm create`.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "vmm/base/error.hpp"

namespace cairn {

struct DiskConfig {
  std::string path;
  bool read_only = false;
};

struct VsockConfigArg {
  uint64_t cid = 3;
  std::string uds_path;  // host listening socket; guest connections go to <uds_path>_<port>
};

struct MachineConfig {
  std::string kernel;   // bzImage or ELF vmlinux
  std::string initrd;   // empty: none
  std::string cmdline;  // appended to cairn's own kernel arguments
  uint64_t memory = 256ULL << 20;
  unsigned cpus = 1;
  std::vector<DiskConfig> disks;
  std::optional<VsockConfigArg> vsock;
  std::string console = "stdio";  // "stdio" or "file:PATH"
  std::vector<std::string> guest_command;  // run by the default guest's init, then power off
};

// Bounds checked before anything is created.
inline constexpr uint64_t kMinMemory = 16ULL << 20;
inline constexpr uint64_t kMaxMemory = 64ULL << 30;
inline constexpr unsigned kMaxCpus = 32;
// virtio-mmio devices take GSIs 5..23 (0-4 belong to the PIT, keyboard, cascade and COM ports).
inline constexpr uint32_t kFirstVirtioGsi = 5;
inline constexpr uint32_t kLastVirtioGsi = 23;

// Checks sizes and counts before anything is created.
Result<void> validate_machine_config(const MachineConfig& cfg);

}  // namespace cairn
