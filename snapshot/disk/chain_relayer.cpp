// A new top layer on a chain that stays open: the running VM's disk frozen
// into a checkpoint without closing and reopening its layers, whose cost
// grows with the chain's depth and would fall in the guest's pause.
#include <unistd.h>

#include "snapshot/disk/chain.hpp"

namespace cairn::disk {

Result<std::unique_ptr<Layer>> Chain::prepare_child(const std::string& path) {
  Header h;
  std::string parent_path;
  {
    std::lock_guard lock(mu_);
    Layer& t = top();
    if (!t.writable()) return fail(Errc::invalid_state, "{} is open read-only: it cannot get a new child here", t.path());
    if (t.header().merge_kind != MergeKind::none)
      return fail(Errc::invalid_state, "{} is in the middle of a merge; it cannot get a child now", t.path());
    // The child records the generation; one bumped later by the guest's
    // first write of this session would no longer match.
    if (auto r = t.begin_change(); !r) return std::unexpected(r.error());
    h = t.header();
    parent_path = t.path();
  }
  if (auto r = create_over(h, parent_path, path); !r) return std::unexpected(r.error());
  auto drop = [&](Error e) -> Result<std::unique_ptr<Layer>> {
    ::unlink(path.c_str());
    return std::unexpected(std::move(e).context(fmt::format("opening the new layer {}", path)));
  };
  auto child = Layer::open(path, true);
  if (!child) return drop(std::move(child.error()));
  if (auto r = (*child)->begin_change(); !r) {
    child->reset();
    return drop(std::move(r.error()));
  }
  return child;
}

Result<void> Chain::push_child(std::unique_ptr<Layer> child) {
  std::lock_guard lock(mu_);
  if (!child || !child->writable()) return fail(Errc::invalid_argument, "a new top layer must be open for writing");
  if (auto r = check_link(*child, top()); !r) return r;
  if (auto r = top().end_writes(); !r) return std::unexpected(std::move(r.error()).context(fmt::format("ending writes to {}", top().path())));
  layers_.insert(layers_.begin(), std::move(child));
  build_below();
  return {};
}

Result<std::unique_ptr<Layer>> Chain::pop_child() {
  std::lock_guard lock(mu_);
  if (layers_.size() < 2) return fail(Errc::invalid_state, "{} has no parent to go back to", top().path());
  if (auto r = layers_[1]->resume_writes(); !r) return std::unexpected(r.error());
  auto child = std::move(layers_.front());
  layers_.erase(layers_.begin());
  build_below();
  return child;
}

}  // namespace cairn::disk
