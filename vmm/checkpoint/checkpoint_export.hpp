// Export-VMCheckpoint / Import-VM: one checkpoint as a self-contained folder
// that imports as a new VM and starts (or resumes) from that point.
//
// The export folder:
//   cairn-export.json       {"format": 1,
//                            "vm": {"name": N, "id": UUID, "machine": <machine config,
//                                   vm_config.hpp, with the paths below, relative to the folder>},
//                            "checkpoint": <published data (checkpoint_tree.hpp)
//                                           + "has_memory": bool>}
//   disks/vda.cdsk, ...     each disk as it was at the checkpoint, flattened into one base layer
//   boot/kernel, boot/initrd  the VM's kernel and initrd
//   state/state.bin, state/memory.img   standard checkpoints only (docs/checkpoint-format.md)
// It is written under a temporary name next to the target and renamed when
// complete and durable: an interrupted export leaves no folder that looks valid.
// Import copies everything into the new VM's folder, gives the VM a new ID,
// and records the checkpoint as the root of its tree with the VM applied to
// it (saved when it has memory, otherwise off). A vsock device gets a socket
// in the new VM's folder.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "vmm/checkpoint/vm_checkpoints.hpp"
#include "vmm/jobs/progress.hpp"

namespace cairn {

inline constexpr int kExportFormat = 1;
inline constexpr const char* kExportManifest = "cairn-export.json";

Result<void> export_checkpoint(VmSession& s, const std::string& which, const std::string& dir, bool dry_run,
                               Progress& p, nlohmann::json& report);

// `name`: "" = the exported VM's name.
Result<void> import_vm(const std::string& dir, const std::string& name, bool dry_run, Progress& p,
                       nlohmann::json& report);

}  // namespace cairn
