// Opening a chain: parent resolution and the identity checks between layers.
#include <sys/stat.h>

#include <filesystem>
#include <set>

#include "snapshot/disk/chain.hpp"
#include "snapshot/disk/io.hpp"
#include "snapshot/disk/merge.hpp"

namespace cairn::disk {
namespace fs = std::filesystem;

std::string resolve_parent(const std::string& child_path, const std::string& stored) {
  fs::path p(stored);
  if (p.is_absolute()) return p.string();
  return (fs::path(child_path).parent_path() / p).lexically_normal().string();
}

std::string relative_parent(const std::string& child_path, const std::string& parent_path) {
  std::error_code ec;
  fs::path child_dir = fs::absolute(child_path, ec).parent_path();
  fs::path parent = fs::absolute(parent_path, ec);
  fs::path rel = parent.lexically_relative(child_dir);
  return rel.empty() ? parent.string() : rel.string();
}

Result<void> check_link(const Layer& child, const Layer& parent) {
  const Header& c = child.header();
  const Header& p = parent.header();
  if (p.uuid != c.parent.uuid)
    return fail(Errc::corrupt,
                "{} is not the parent of {} (its UUID is {}, the child expects {}): the parent was moved or replaced",
                parent.path(), child.path(), uuid_text(p.uuid), uuid_text(c.parent.uuid));
  if (p.merge_kind == MergeKind::absorbing_child) {
    // Mid-merge from this very child: the parent only gained copies of the
    // child's own blocks, so the chain through the child reads the same.
    if (p.merge_peer == c.uuid) return {};
    return fail(Errc::invalid_state, "parent {} is in the middle of absorbing another layer ({}); finish that merge first",
                parent.path(), uuid_text(p.merge_peer));
  }
  if (p.generation != c.parent.generation)
    return fail(Errc::corrupt,
                "parent {} was modified after {} was created over it (generation {}, expected {}); refusing to serve mixed data",
                parent.path(), child.path(), p.generation, c.parent.generation);
  if (p.virtual_size != c.virtual_size)
    return fail(Errc::corrupt, "parent {} is {} bytes but its child {} is {} bytes", parent.path(), p.virtual_size,
                child.path(), c.virtual_size);
  if (p.block_shift != c.block_shift)
    return fail(Errc::corrupt, "parent {} has {}-byte blocks but its child {} has {}-byte blocks", parent.path(),
                p.block_size(), child.path(), c.block_size());
  return {};
}

Result<std::unique_ptr<Chain>> Chain::open(const std::string& top_path, OpenOptions o) {
  std::unique_ptr<Chain> c(new Chain());
  std::set<std::pair<dev_t, ino_t>> files;
  std::set<Uuid> ids;
  std::string path = top_path;
  for (;;) {
    if (c->layers_.size() >= size_t(kMaxChainDepth))
      return fail(Errc::corrupt, "chain under {} is deeper than {} layers", top_path, kMaxChainDepth);
    bool is_top = c->layers_.empty();
    auto l = Layer::open(path, is_top && o.writable);
    if (!l) {
      if (is_top) return std::unexpected(l.error());
      return std::unexpected(std::move(l.error()).context(
          fmt::format("opening parent of {}", c->layers_.back()->path())));
    }
    struct stat st;
    if (::fstat((*l)->fd(), &st) != 0) return fail_errno("fstat {}", path);
    if (!files.insert({st.st_dev, st.st_ino}).second || !ids.insert((*l)->header().uuid).second)
      return fail(Errc::corrupt, "parent chain of {} has a cycle at {}", top_path, path);
    if (!is_top) {
      if (auto r = check_link(*c->layers_.back(), **l); !r) return std::unexpected(r.error());
    } else if ((*l)->header().merge_kind == MergeKind::absorbing_child && !o.allow_merge_target) {
      return fail(Errc::invalid_state,
                  "{} is in the middle of absorbing its child {}; run `cairn disk merge` on that child to finish",
                  path, uuid_text((*l)->header().merge_peer));
    }
    c->layers_.push_back(std::move(*l));
    const Header& h = c->layers_.back()->header();
    if (!h.has_parent) break;
    path = resolve_parent(path, h.parent.path);
  }
  Layer& t = c->top();
  if (o.writable && t.header().merge_kind == MergeKind::absorbing_parent) {
    // An interrupted merge_into_child: finish it now that we may write.
    if (auto r = finish_absorbing_parent(t, *c->layers_[1], {}); !r)
      return std::unexpected(std::move(r.error()).context(fmt::format("finishing the merge into {}", top_path)));
    c->layers_.erase(c->layers_.begin() + 1);
  }
  c->build_below();
  c->scratch_.resize(c->block_size());
  return c;
}

void Chain::build_below() {
  // Parents never change while open, so where each block lives below the
  // top is resolved once: reads cost the same at any chain depth.
  uint64_t n = top().entries();
  below_.assign(n, Below{});
  for (uint64_t i = 0; i < n; ++i) {
    for (uint32_t k = 1; k < layers_.size(); ++k) {
      uint64_t e = layers_[k]->entry(i);
      if (entry_state(e) == EntryState::unallocated) continue;
      if (entry_state(e) == EntryState::data) below_[i] = Below{k, e};
      break;
    }
  }
}

Result<void> create_base(const std::string& path, uint64_t size, uint32_t block_shift) {
  return Layer::create(path, CreateParams{.virtual_size = size, .block_shift = block_shift});
}

Result<void> create_over(const Header& h, const std::string& parent, const std::string& child) {
  ParentLink link{h.uuid, h.generation, relative_parent(child, parent)};
  return Layer::create(child, CreateParams{.virtual_size = h.virtual_size, .block_shift = h.block_shift,
                                           .parent = link});
}

Result<void> create_child(const std::string& parent, const std::string& child) {
  CAIRN_TRY_CTX(chain, Chain::open(parent), fmt::format("opening parent {}", parent));
  return create_over(chain->top().header(), parent, child);
}

Result<void> create_child_of_top(const std::string& parent, const std::string& child) {
  auto layer = Layer::open(parent, false);
  if (!layer) return std::unexpected(std::move(layer.error()).context(fmt::format("opening parent {}", parent)));
  if ((*layer)->header().merge_kind != MergeKind::none)
    return fail(Errc::invalid_state, "{} is in the middle of a merge; it cannot get a child now", parent);
  return create_over((*layer)->header(), parent, child);
}

}  // namespace cairn::disk
