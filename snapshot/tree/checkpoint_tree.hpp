// A VM's checkpoint tree: the metadata of every checkpoint and the position
// of the running VM ("Now"), stored in <checkpoint location>/checkpoints.json.
//
// The file is one JSON object (UTF-8), written atomically and durably
// (vmm/vmstore/atomic_file.hpp):
//   {
//     "format": 1,                       integer; readers refuse other values
//     "current": "<checkpoint id>" | "", the checkpoint Now descends from ("" = none)
//     "checkpoints": [ <checkpoint>, ... ]   in creation order
//   }
// and each <checkpoint> holds the published fields of to_published_json()
// plus the private ones below (has_memory, vm_state, note, stats).
//
// The disk layers and memory files themselves are not described here: the
// checkpoint code owns them (vmm/checkpoint/); a checkpoint only names them.
#pragma once
#include <ctime>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "vmm/base/error.hpp"

namespace cairn::tree {

inline constexpr int kTreeFormat = 1;
inline constexpr size_t kMaxNameChars = 100;  // Unicode code points, as Hyper-V counts them
inline constexpr size_t kMaxDescriptionBytes = 4096;
inline constexpr size_t kMaxTreeFileBytes = 16 << 20;

enum class CheckpointType { standard, production };
std::string_view to_string(CheckpointType t);
std::optional<CheckpointType> checkpoint_type_from(std::string_view s);

struct Checkpoint {
  // Published (seed 002's "Create Checkpoint Published Data").
  std::string id;                  // UUID v4
  std::string name;
  std::string description;
  CheckpointType type = CheckpointType::standard;
  std::string added_time;          // ISO 8601 UTC, "YYYY-MM-DDTHH:MM:SSZ"
  std::string modified_time;       // same; changes on rename and description edits
  std::string parent_id;           // "" for a root checkpoint
  std::vector<std::string> disks;  // "virtual disk drives": the frozen layer of each disk slot (absolute paths)
  std::string vm_id;
  std::string vm_name;
  bool enabled = true;             // false: the VM cannot be started from it (e.g. a failed import)
  std::string most_recent_task;    // "Create checkpoint", "Apply checkpoint", "Rename checkpoint", ...
  // Private.
  bool has_memory = false;         // a standard checkpoint of a running or paused VM
  std::string vm_state;            // "running" | "paused" | "off" when it was taken
  std::string note;                // e.g. why a production checkpoint fell back to standard
  nlohmann::json stats = nlohmann::json::object();  // sizes and times, free form
};

struct Tree {
  std::string current;                  // "" = Now has no parent checkpoint
  std::vector<Checkpoint> checkpoints;  // creation order

  const Checkpoint* find(std::string_view id) const;
  Checkpoint* find(std::string_view id);
  // By ID (exact, or a unique prefix of at least 8 hex digits) or by name.
  // Errc::not_found when nothing matches; Errc::invalid_argument when a name
  // is ambiguous, with a message listing every candidate's ID and added time.
  Result<const Checkpoint*> resolve(std::string_view name_or_id) const;
  // Direct children, in creation order.
  std::vector<const Checkpoint*> children(std::string_view id) const;
  // Every checkpoint below `id` (not `id` itself), parents before children.
  std::vector<const Checkpoint*> descendants(std::string_view id) const;
  // `id` and its ancestors up to the root, `id` first.
  std::vector<const Checkpoint*> path_to_root(std::string_view id) const;

  // Appends `c` (c.parent_id must exist or be ""); Now moves under it.
  Result<void> add(Checkpoint c);
  // Removes one checkpoint: its children take its parent; Now's parent
  // moves up too when it was `id`.
  Result<void> remove_one(std::string_view id);
  // Removes `id` and all its descendants; returns the removed IDs.
  Result<std::vector<std::string>> remove_subtree(std::string_view id);
};

// Names: not blank (not only white space), at most kMaxNameChars code
// points, valid UTF-8, no control characters. Errc::invalid_argument otherwise.
Result<void> validate_name(std::string_view name);
Result<void> validate_description(std::string_view d);
// "VMNAME (MM/DD/YYYY - hh:mm:ss AM/PM)" in local time, as Hyper-V names
// checkpoints (seeds 000 and 001). A VM name too long for the limit is cut
// (at a code point boundary) so that the result is valid.
std::string default_name(std::string_view vm_name, std::time_t when);

// File I/O. A missing file is an empty tree; a damaged one is Errc::corrupt
// with the path in the message; a tree whose links are inconsistent (a
// parent that does not exist, a cycle, duplicate IDs, a current that does
// not exist) is Errc::corrupt too.
Result<Tree> load_tree(const std::string& path);
Result<void> save_tree(const std::string& path, const Tree& t);
nlohmann::json tree_to_json(const Tree& t);
Result<Tree> tree_from_json(const nlohmann::json& j);

// Exactly the published fields, for `--json`:
//   checkpoint_id, name, description, type, added_time, modified_time,
//   parent_checkpoint_id (null for a root), virtual_disk_drives, vm_id,
//   vm_name, enabled, most_recent_task
nlohmann::json to_published_json(const Checkpoint& c);

// The tree as Hyper-V Manager draws it, one line per checkpoint, with
// "Now" under the current checkpoint (or at the top level when "" ):
//   web1 (11/28/2026 - 01:02:03 AM)
//   ├─ before-upgrade
//   │  └─ Now
//   └─ other-branch
// Names are followed by a short ID in brackets when they are not unique.
std::string render_tree(const Tree& t);

}  // namespace cairn::tree
