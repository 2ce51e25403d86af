// Builders for checkpoint-tree tests: fixed IDs and complete checkpoints.
#pragma once
#include <cstdlib>
#include <filesystem>
#include <string>

#include <fmt/format.h>

#include "snapshot/tree/checkpoint_tree.hpp"

namespace cairn::tree::test {

// A UUID-shaped ID whose first 8 digits are `head`, so tests control prefixes.
inline std::string id_of(uint32_t head, uint32_t tail = 0) {
  return fmt::format("{:08x}-0000-4000-8000-{:012x}", head, tail);
}

inline Checkpoint make_checkpoint(std::string id, std::string name, std::string parent = "") {
  Checkpoint c;
  c.id = std::move(id);
  c.name = std::move(name);
  c.parent_id = std::move(parent);
  c.added_time = "2026-11-28T01:02:03Z";
  c.modified_time = "2026-11-28T01:02:03Z";
  c.vm_id = "0b5e7a34-1111-4222-8333-444455556666";
  c.vm_name = "web1";
  c.most_recent_task = "Create checkpoint";
  c.vm_state = "off";
  return c;
}

// A fresh folder for one test, removed with its content.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/cairn-tree-XXXXXX";
    path_ = ::mkdtemp(tmpl.data()) ? tmpl : std::string();
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace cairn::tree::test
