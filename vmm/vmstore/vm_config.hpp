// A stored VM's configuration: <state folder>/config.json.
//
// The file is one JSON object (UTF-8), written atomically (see atomic_file.hpp):
//   {
//     "format": 1,                          integer; readers refuse other values
//     "id": "3f1c2a9e-...-...",             UUID v4 (uuid.hpp), fixed for the VM's life
//     "name": "web1",                       equals the folder name (vm_name.hpp)
//     "created": "2024-05-01T12:00:00Z",    UTC, ISO 8601, seconds
//     "machine": {                          the fields of MachineConfig:
//       "kernel": "/abs/vmlinux",           absolute path
//       "initrd": "/abs/initramfs.cpio.gz", absolute path or "" (none)
//       "cmdline": "",                      extra kernel arguments
//       "memory": 268435456,                bytes
//       "cpus": 1,
//       "disks": [{"path": "/abs/d.img", "read_only": false}, ...],   vda, vdb, ...
//       "vsock": null | {"cid": 3, "uds_path": "/abs/vm.vsock"},
//       "console": "stdio" | "file:/abs/path",
//       "guest_command": ["echo hi"]        words for the default guest's init
//     }
//   }
// Other top-level keys are kept as they are when the file is rewritten, so
// other areas can store their settings beside these without a format change.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "vmm/base/error.hpp"
#include "vmm/machine/machine_config.hpp"

namespace cairn {

inline constexpr int kVmConfigFormat = 1;
inline constexpr size_t kMaxVmConfigBytes = 1 << 20;

struct VmRecord {
  std::string id;
  std::string name;
  std::string created;  // ISO 8601 UTC
  MachineConfig machine;
  nlohmann::json extra = nlohmann::json::object();  // unknown top-level keys, kept
};

nlohmann::json machine_config_to_json(const MachineConfig& m);
Result<MachineConfig> machine_config_from_json(const nlohmann::json& j);

nlohmann::json vm_record_to_json(const VmRecord& r);
Result<VmRecord> vm_record_from_json(const nlohmann::json& j);

// File I/O: errors name the path; a damaged file is Errc::corrupt.
Result<void> save_vm_record(const std::string& path, const VmRecord& r);
Result<VmRecord> load_vm_record(const std::string& path);

// Now, as "YYYY-MM-DDTHH:MM:SSZ".
std::string utc_timestamp_now();

}  // namespace cairn
