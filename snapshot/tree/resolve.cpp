// Tree::resolve: how users name a checkpoint on the command line.
#include "snapshot/tree/checkpoint_tree.hpp"

namespace cairn::tree {

namespace {
// Shorter prefixes would collide too easily to be a safe way to pick a
// checkpoint to delete or apply.
constexpr size_t kMinIdPrefix = 8;

std::string candidate_list(const std::vector<const Checkpoint*>& cs) {
  std::string out;
  for (auto* c : cs) out += fmt::format("\n  {}  added {}", c->id, c->added_time);
  return out;
}
}  // namespace

Result<const Checkpoint*> Tree::resolve(std::string_view name_or_id) const {
  if (name_or_id.empty()) return fail(Errc::invalid_argument, "no checkpoint name or ID given");
  if (auto* c = find(name_or_id)) return c;

  std::vector<const Checkpoint*> by_prefix;
  if (name_or_id.size() >= kMinIdPrefix)
    for (auto& c : checkpoints)
      if (c.id.starts_with(name_or_id)) by_prefix.push_back(&c);
  if (by_prefix.size() == 1) return by_prefix.front();

  std::vector<const Checkpoint*> by_name;
  for (auto& c : checkpoints)
    if (c.name == name_or_id) by_name.push_back(&c);
  if (by_name.size() == 1) return by_name.front();
  if (by_name.size() > 1)
    return fail(Errc::invalid_argument, "{} checkpoints are named '{}':{}\npass the checkpoint ID instead",
                by_name.size(), name_or_id, candidate_list(by_name));
  if (by_prefix.size() > 1)
    return fail(Errc::invalid_argument, "{} checkpoint IDs start with '{}':{}\npass more of the ID",
                by_prefix.size(), name_or_id, candidate_list(by_prefix));
  return fail(Errc::not_found, "no checkpoint has the name or ID '{}'", name_or_id);
}

}  // namespace cairn::tree
