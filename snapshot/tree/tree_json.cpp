// checkpoints.json: conversion, strict validation and file I/O. Every field
// is checked for type on load because other commands act on these IDs and
// paths (merging and deleting disk layers); a hand-edited or damaged file is
// refused rather than half-read.
#include <unordered_map>
#include <unordered_set>

#include "snapshot/tree/checkpoint_tree.hpp"
#include "vmm/vmstore/atomic_file.hpp"
#include "vmm/vmstore/uuid.hpp"

namespace cairn::tree {

using nlohmann::json;

namespace {

// "YYYY-MM-DDTHH:MM:SSZ", by shape only.
bool is_utc_timestamp(std::string_view s) {
  constexpr std::string_view shape = "dddd-dd-ddTdd:dd:ddZ";
  if (s.size() != shape.size()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (shape[i] == 'd' ? !(s[i] >= '0' && s[i] <= '9') : s[i] != shape[i]) return false;
  }
  return true;
}

Result<const json*> member(const json& j, const char* key, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end()) return fail(Errc::corrupt, "{}: \"{}\" is missing", where, key);
  return &*it;
}

Result<std::string> string_field(const json& j, const char* key, const std::string& where) {
  auto m = member(j, key, where);
  if (!m) return std::unexpected(m.error());
  if (!(*m)->is_string()) return fail(Errc::corrupt, "{}: \"{}\" is not a string", where, key);
  return (*m)->get<std::string>();
}

Result<bool> bool_field(const json& j, const char* key, const std::string& where) {
  auto m = member(j, key, where);
  if (!m) return std::unexpected(m.error());
  if (!(*m)->is_boolean()) return fail(Errc::corrupt, "{}: \"{}\" is not true or false", where, key);
  return (*m)->get<bool>();
}

#define CAIRN_TREE_GET(var, expr) \
  auto var##_r_ = (expr);         \
  if (!var##_r_) return std::unexpected(var##_r_.error()); \
  auto var = std::move(*var##_r_)

Result<Checkpoint> checkpoint_from_json(const json& j, size_t index) {
  std::string w = fmt::format("checkpoint {}", index);
  if (!j.is_object()) return fail(Errc::corrupt, "{} is not an object", w);
  Checkpoint c;
  CAIRN_TREE_GET(id, string_field(j, "checkpoint_id", w));
  if (!is_uuid(id)) return fail(Errc::corrupt, "{}: \"checkpoint_id\" '{}' is not a UUID", w, id);
  c.id = std::move(id);
  w = fmt::format("checkpoint {} ({})", index, c.id);
  CAIRN_TREE_GET(name, string_field(j, "name", w));
  CAIRN_TREE_GET(description, string_field(j, "description", w));
  CAIRN_TREE_GET(type, string_field(j, "type", w));
  auto t = checkpoint_type_from(type);
  if (!t) return fail(Errc::corrupt, "{}: \"type\" '{}' is neither standard nor production", w, type);
  CAIRN_TREE_GET(added, string_field(j, "added_time", w));
  CAIRN_TREE_GET(modified, string_field(j, "modified_time", w));
  if (!is_utc_timestamp(added)) return fail(Errc::corrupt, "{}: \"added_time\" '{}' is not a UTC time", w, added);
  if (!is_utc_timestamp(modified))
    return fail(Errc::corrupt, "{}: \"modified_time\" '{}' is not a UTC time", w, modified);
  CAIRN_TREE_GET(parent, member(j, "parent_checkpoint_id", w));
  if (!parent->is_null()) {
    if (!parent->is_string() || !is_uuid(parent->get<std::string>()))
      return fail(Errc::corrupt, "{}: \"parent_checkpoint_id\" is neither null nor a UUID", w);
    c.parent_id = parent->get<std::string>();
  }
  CAIRN_TREE_GET(disks, member(j, "virtual_disk_drives", w));
  if (!disks->is_array()) return fail(Errc::corrupt, "{}: \"virtual_disk_drives\" is not an array", w);
  for (auto& d : *disks) {
    if (!d.is_string()) return fail(Errc::corrupt, "{}: \"virtual_disk_drives\" holds a non-string", w);
    c.disks.push_back(d.get<std::string>());
  }
  CAIRN_TREE_GET(vm_id, string_field(j, "vm_id", w));
  CAIRN_TREE_GET(vm_name, string_field(j, "vm_name", w));
  CAIRN_TREE_GET(enabled, bool_field(j, "enabled", w));
  CAIRN_TREE_GET(task, string_field(j, "most_recent_task", w));
  CAIRN_TREE_GET(has_memory, bool_field(j, "has_memory", w));
  CAIRN_TREE_GET(vm_state, string_field(j, "vm_state", w));
  CAIRN_TREE_GET(note, string_field(j, "note", w));
  CAIRN_TREE_GET(stats, member(j, "stats", w));
  if (!stats->is_object()) return fail(Errc::corrupt, "{}: \"stats\" is not an object", w);
  c.name = std::move(name);
  c.description = std::move(description);
  c.type = *t;
  c.added_time = std::move(added);
  c.modified_time = std::move(modified);
  c.vm_id = std::move(vm_id);
  c.vm_name = std::move(vm_name);
  c.enabled = enabled;
  c.most_recent_task = std::move(task);
  c.has_memory = has_memory;
  c.vm_state = std::move(vm_state);
  c.note = std::move(note);
  c.stats = *stats;
  return c;
}

// Unique IDs, existing parents, no cycles, an existing current.
Result<void> check_links(const Tree& t) {
  std::unordered_map<std::string_view, std::string_view> parent_of;
  for (auto& c : t.checkpoints)
    if (!parent_of.emplace(c.id, c.parent_id).second)
      return fail(Errc::corrupt, "checkpoint ID {} appears twice", c.id);
  for (auto& c : t.checkpoints)
    if (!c.parent_id.empty() && !parent_of.contains(c.parent_id))
      return fail(Errc::corrupt, "checkpoint {}: parent {} does not exist", c.id, c.parent_id);
  for (auto& c : t.checkpoints) {
    // A chain longer than the number of checkpoints must revisit one.
    std::string_view at = c.parent_id;
    for (size_t steps = 0; !at.empty(); ++steps) {
      if (at == c.id || steps > t.checkpoints.size())
        return fail(Errc::corrupt, "checkpoint {} is its own ancestor (the parent links form a cycle)", c.id);
      at = parent_of[at];
    }
  }
  if (!t.current.empty() && !parent_of.contains(t.current))
    return fail(Errc::corrupt, "\"current\" names checkpoint {}, which does not exist", t.current);
  return {};
}

}  // namespace

json to_published_json(const Checkpoint& c) {
  return {{"checkpoint_id", c.id},
          {"name", c.name},
          {"description", c.description},
          {"type", to_string(c.type)},
          {"added_time", c.added_time},
          {"modified_time", c.modified_time},
          {"parent_checkpoint_id", c.parent_id.empty() ? json(nullptr) : json(c.parent_id)},
          {"virtual_disk_drives", c.disks},
          {"vm_id", c.vm_id},
          {"vm_name", c.vm_name},
          {"enabled", c.enabled},
          {"most_recent_task", c.most_recent_task}};
}

json tree_to_json(const Tree& t) {
  json list = json::array();
  for (auto& c : t.checkpoints) {
    json j = to_published_json(c);
    j["has_memory"] = c.has_memory;
    j["vm_state"] = c.vm_state;
    j["note"] = c.note;
    j["stats"] = c.stats.is_object() ? c.stats : json::object();
    list.push_back(std::move(j));
  }
  return {{"format", kTreeFormat}, {"current", t.current}, {"checkpoints", std::move(list)}};
}

Result<Tree> tree_from_json(const json& j) {
  if (!j.is_object()) return fail(Errc::corrupt, "the checkpoint tree is not a JSON object");
  CAIRN_TREE_GET(format, member(j, "format", "checkpoint tree"));
  if (!format->is_number_integer()) return fail(Errc::corrupt, "checkpoint tree: \"format\" is not an integer");
  if (format->get<int64_t>() != kTreeFormat)
    return fail(Errc::corrupt, "checkpoint tree format {} is not supported (this cairn reads format {})",
                format->get<int64_t>(), kTreeFormat);
  Tree t;
  CAIRN_TREE_GET(current, string_field(j, "current", "checkpoint tree"));
  if (!current.empty() && !is_uuid(current))
    return fail(Errc::corrupt, "checkpoint tree: \"current\" '{}' is neither \"\" nor a UUID", current);
  t.current = std::move(current);
  CAIRN_TREE_GET(list, member(j, "checkpoints", "checkpoint tree"));
  if (!list->is_array()) return fail(Errc::corrupt, "checkpoint tree: \"checkpoints\" is not an array");
  for (size_t i = 0; i < list->size(); ++i) {
    CAIRN_TREE_GET(c, checkpoint_from_json((*list)[i], i));
    t.checkpoints.push_back(std::move(c));
  }
  if (auto r = check_links(t); !r) return std::unexpected(r.error());
  return t;
}

Result<Tree> load_tree(const std::string& path) {
  auto text = read_small_file(path, kMaxTreeFileBytes);
  if (!text && text.error().code == Errc::not_found) return Tree{};
  if (!text) return std::unexpected(text.error());
  json j = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return fail(Errc::corrupt, "{} is not valid JSON", path);
  auto t = tree_from_json(j);
  if (!t) return std::unexpected(std::move(t.error()).context(path));
  return t;
}

Result<void> save_tree(const std::string& path, const Tree& t) {
  // A tree that would not load back must not replace a good file.
  json j = tree_to_json(t);
  if (auto r = tree_from_json(j); !r)
    return fail(Errc::invalid_argument, "refusing to save {}: {}", path, r.error().message);
  std::string text;
  try {
    text = j.dump(2) + "\n";
  } catch (const json::exception& e) {  // a string that is not UTF-8
    return fail(Errc::invalid_argument, "refusing to save {}: {}", path, e.what());
  }
  return write_file_atomic(path, text, 0600);
}

}  // namespace cairn::tree
