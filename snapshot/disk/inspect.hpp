// What `cairn disk info` and `cairn disk check` report about a chain.
#pragma once
#include <string>
#include <vector>

#include "snapshot/disk/chain.hpp"

namespace cairn::disk {

struct LayerInfo {
  std::string path;
  std::string uuid;
  uint64_t generation = 0;
  uint64_t virtual_size = 0;
  uint64_t block_size = 0;
  uint64_t data_blocks = 0;   // blocks this layer holds
  uint64_t zero_blocks = 0;   // blocks it marks as zeros
  uint64_t free_slots = 0;    // reusable data slots inside the file
  uint64_t file_bytes = 0;
  std::string parent_path;    // as stored; empty for a base
  std::string parent_uuid;
  std::string merge_state;    // "", "absorbing child <uuid>", "absorbing parent <uuid>"
};

struct ChainInfo {
  std::vector<LayerInfo> layers;  // top first
};

// Opens the chain read-only (every structural check runs) and describes it.
// A layer in the middle of absorbing its child is described, not refused.
Result<ChainInfo> inspect_chain(const std::string& top);

// Structural checks of a single file without its parents: both header slots
// (a torn slot is reported, not fatal), BAT checksums, entries, log replay.
// Returns notes for the user; an error means corruption.
Result<std::vector<std::string>> check_layer_file(const std::string& path);

}  // namespace cairn::disk

namespace cairn::disk {
// The open/parse path of Layer::open over an in-memory image (through a
// memfd): what the fuzz target and the corrupted-header tests feed.
Result<void> validate_layer_image(std::span<const uint8_t> image);
}  // namespace cairn::disk
