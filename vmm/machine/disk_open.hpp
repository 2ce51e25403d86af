// Opens a VM disk by its format: a cairn differencing-disk chain (its top
// layer, read-write) or a raw image.
#pragma once
#include <memory>

#include "devices/block_backend.hpp"
#include "vmm/machine/machine_config.hpp"

namespace cairn {
Result<std::shared_ptr<BlockBackend>> open_disk(const DiskConfig& disk);
}
