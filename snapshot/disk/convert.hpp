// Conversions between a raw image and a cairn chain.
#pragma once
#include <string>

#include "snapshot/disk/merge.hpp"

namespace cairn::disk {

// A new base layer at dst holding the raw file's bytes (all-zero blocks stay
// unallocated). The size is rounded up to 512 bytes.
Result<void> convert_raw_to_cairn(const std::string& raw, const std::string& dst,
                                  uint32_t block_shift = kDefaultBlockShift, const ProgressFn& progress = {});
// A raw (sparse) file at dst with what the chain at top reads.
Result<void> convert_cairn_to_raw(const std::string& top, const std::string& dst, const ProgressFn& progress = {});
// A new base layer at dst with what the chain at top reads (same block
// size; all-zero blocks stay unallocated): a self-contained copy of a disk.
Result<void> flatten_chain(const std::string& top, const std::string& dst, const ProgressFn& progress = {});

}  // namespace cairn::disk
