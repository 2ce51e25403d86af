// Tree navigation and edits. Checkpoints stay in creation order in one
// vector; links are parent IDs, so every edit is a scan (trees are small:
// Hyper-V allows 50 checkpoints per VM).
#include <algorithm>
#include <unordered_set>

#include "snapshot/tree/checkpoint_tree.hpp"
#include "vmm/vmstore/uuid.hpp"

namespace cairn::tree {

std::string_view to_string(CheckpointType t) {
  return t == CheckpointType::production ? "production" : "standard";
}

std::optional<CheckpointType> checkpoint_type_from(std::string_view s) {
  if (s == "standard") return CheckpointType::standard;
  if (s == "production") return CheckpointType::production;
  return std::nullopt;
}

const Checkpoint* Tree::find(std::string_view id) const {
  if (id.empty()) return nullptr;
  for (auto& c : checkpoints)
    if (c.id == id) return &c;
  return nullptr;
}

Checkpoint* Tree::find(std::string_view id) {
  return const_cast<Checkpoint*>(std::as_const(*this).find(id));
}

std::vector<const Checkpoint*> Tree::children(std::string_view id) const {
  std::vector<const Checkpoint*> out;
  if (id.empty()) return out;
  for (auto& c : checkpoints)
    if (c.parent_id == id) out.push_back(&c);
  return out;
}

std::vector<const Checkpoint*> Tree::descendants(std::string_view id) const {
  std::vector<const Checkpoint*> out;
  // Depth first, children in creation order; `seen` keeps a damaged
  // in-memory tree (a cycle) from looping.
  std::unordered_set<std::string_view> seen{id};
  std::vector<const Checkpoint*> stack;
  auto push_children = [&](std::string_view parent) {
    auto kids = children(parent);
    for (auto it = kids.rbegin(); it != kids.rend(); ++it)
      if (seen.insert((*it)->id).second) stack.push_back(*it);
  };
  push_children(id);
  while (!stack.empty()) {
    const Checkpoint* c = stack.back();
    stack.pop_back();
    out.push_back(c);
    push_children(c->id);
  }
  return out;
}

std::vector<const Checkpoint*> Tree::path_to_root(std::string_view id) const {
  std::vector<const Checkpoint*> out;
  for (const Checkpoint* c = find(id); c && out.size() <= checkpoints.size(); c = find(c->parent_id))
    out.push_back(c);
  return out;
}

Result<void> Tree::add(Checkpoint c) {
  if (!is_uuid(c.id)) return fail(Errc::invalid_argument, "checkpoint ID '{}' is not a UUID", c.id);
  if (find(c.id)) return fail(Errc::invalid_argument, "a checkpoint with ID {} already exists", c.id);
  if (!c.parent_id.empty() && !find(c.parent_id))
    return fail(Errc::not_found, "parent checkpoint {} does not exist", c.parent_id);
  current = c.id;
  checkpoints.push_back(std::move(c));
  return {};
}

Result<void> Tree::remove_one(std::string_view id) {
  auto it = std::find_if(checkpoints.begin(), checkpoints.end(), [&](auto& c) { return c.id == id; });
  if (it == checkpoints.end()) return fail(Errc::not_found, "no checkpoint has ID {}", id);
  std::string removed = it->id;
  std::string parent = it->parent_id;
  checkpoints.erase(it);  // erase keeps the others in creation order
  for (auto& c : checkpoints)
    if (c.parent_id == removed) c.parent_id = parent;
  if (current == removed) current = parent;
  return {};
}

Result<std::vector<std::string>> Tree::remove_subtree(std::string_view id) {
  const Checkpoint* top = find(id);
  if (!top) return fail(Errc::not_found, "no checkpoint has ID {}", id);
  std::vector<std::string> removed{top->id};
  for (auto* d : descendants(id)) removed.push_back(d->id);
  std::string parent = top->parent_id;
  std::unordered_set<std::string> gone(removed.begin(), removed.end());
  if (gone.contains(current)) current = parent;
  std::erase_if(checkpoints, [&](auto& c) { return gone.contains(c.id); });
  return removed;
}

}  // namespace cairn::tree
