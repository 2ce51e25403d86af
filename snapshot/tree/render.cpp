// render_tree: the checkpoint tree as Hyper-V Manager's Checkpoints pane
// shows it, drawn with box characters for a terminal.
#include <unordered_map>

#include "snapshot/tree/checkpoint_tree.hpp"

namespace cairn::tree {

namespace {

constexpr size_t kShortIdChars = 8;

// One line to draw: a checkpoint, or Now when `c` is null.
struct Item {
  const Checkpoint* c;
  std::string prefix;  // what this line starts with, before its connector
  bool last;
  bool top;
};

// Names come from a file too, so a stray control character must not break
// the one-line-per-checkpoint layout.
std::string printable(std::string_view s) {
  std::string out(s);
  for (auto& ch : out)
    if (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) ch = '?';
  return out;
}

std::string label(const Checkpoint& c, const std::unordered_map<std::string_view, size_t>& name_count) {
  std::string out = printable(c.name);
  if (name_count.at(c.name) > 1) out += fmt::format(" [{}]", c.id.substr(0, kShortIdChars));
  if (c.type == CheckpointType::production) out += " (production)";
  return out;
}

}  // namespace

std::string render_tree(const Tree& t) {
  std::unordered_map<std::string_view, size_t> name_count;
  for (auto& c : t.checkpoints) ++name_count[c.name];

  // Checkpoints whose parent is missing (a damaged tree in memory) are shown
  // as roots rather than hidden.
  std::vector<const Checkpoint*> top;
  for (auto& c : t.checkpoints)
    if (c.parent_id.empty() || !t.find(c.parent_id)) top.push_back(&c);
  bool now_on_top = !t.find(t.current);
  if (now_on_top) top.push_back(nullptr);

  // Explicit stack rather than recursion: a long chain cannot overflow it.
  std::vector<Item> stack;
  auto push_level = [&](const std::vector<const Checkpoint*>& items, const std::string& prefix, bool is_top) {
    for (size_t i = items.size(); i-- > 0;) stack.push_back({items[i], prefix, i + 1 == items.size(), is_top});
  };
  push_level(top, "", true);

  std::string out;
  while (!stack.empty()) {
    Item it = std::move(stack.back());
    stack.pop_back();
    std::string text = it.c ? label(*it.c, name_count) : "Now";
    if (it.top) {
      out += text + "\n";
    } else {
      out += it.prefix + (it.last ? "└─ " : "├─ ") + text + "\n";
    }
    if (!it.c) continue;
    auto kids = t.children(it.c->id);
    if (t.current == it.c->id) kids.push_back(nullptr);
    std::string child_prefix = it.top ? "" : it.prefix + (it.last ? "   " : "│  ");
    push_level(kids, child_prefix, false);
  }
  return out;
}

}  // namespace cairn::tree
