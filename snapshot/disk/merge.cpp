#include "snapshot/disk/merge.hpp"

#include <sys/stat.h>

#include "snapshot/disk/io.hpp"

namespace cairn::disk {
namespace {

constexpr uint64_t kCommitEvery = 4096;  // blocks between intermediate commits

// Copies block i of `src` (a data entry) into `dst`, in place when dst
// already holds the block.
Result<void> copy_block(const Layer& src, uint64_t src_entry, Layer& dst, uint64_t i, std::vector<uint8_t>& buf) {
  if (auto r = pread_full(src.fd(), entry_offset(src_entry), buf); !r) return r;
  uint64_t de = dst.entry(i);
  uint64_t slot = entry_state(de) == EntryState::data ? entry_offset(de) : dst.allocate_slot();
  if (auto r = pwrite_full(dst.fd(), slot, buf); !r) return r;
  dst.set_entry(i, make_data_entry(slot));
  dst.note_data_written();
  return {};
}

bool same_file(int a, int b) {
  struct stat sa, sb;
  return ::fstat(a, &sa) == 0 && ::fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

}  // namespace

Result<void> merge_into_parent(const std::string& child_path, const ProgressFn& progress) {
  std::string parent_path;
  {
    // Validates the whole chain, including the child's link to its parent.
    CAIRN_TRY_CTX(chain, Chain::open(child_path), fmt::format("opening {}", child_path));
    if (chain->depth() < 2) return fail(Errc::invalid_argument, "{} has no parent to merge into", child_path);
    if (chain->top().header().merge_kind != MergeKind::none)
      return fail(Errc::invalid_state, "{} is itself in the middle of a merge; finish that first", child_path);
    parent_path = chain->layers()[1]->path();
  }
  CAIRN_TRY_CTX(child, Layer::open(child_path, false), "opening child");
  CAIRN_TRY_CTX(parent, Layer::open(parent_path, true), "opening parent for writing");
  const Header& ch = child->header();
  Header ph = parent->header();
  if (ph.uuid != ch.parent.uuid) return fail(Errc::corrupt, "{} changed while the merge started", parent_path);
  if (ph.merge_kind == MergeKind::absorbing_child && ph.merge_peer != ch.uuid)
    return fail(Errc::invalid_state, "{} is absorbing another layer", parent_path);
  if (ph.merge_kind == MergeKind::absorbing_parent)
    return fail(Errc::invalid_state, "{} is in the middle of absorbing its own parent; finish that first", parent_path);
  if (ph.merge_kind == MergeKind::none) {
    ph.merge_kind = MergeKind::absorbing_child;
    ph.merge_peer = ch.uuid;
    ph.generation++;  // other children of the parent are refused from here on
    if (auto r = parent->write_header(ph); !r) return r;
  }

  const uint64_t bs = child->block_size(), n = child->entries(), total = child->data_blocks() * bs;
  std::vector<uint8_t> buf(bs);
  uint64_t done = 0, since_commit = 0;
  for (uint64_t i = 0; i < n; ++i) {
    uint64_t e = child->entry(i);
    if (entry_state(e) == EntryState::data) {
      if (auto r = copy_block(*child, e, *parent, i, buf); !r) return r;
      done += bs;
      if (progress) progress(done, total);
    } else if (entry_state(e) == EntryState::zero) {
      parent->set_entry(i, ph.has_parent ? kZeroEntry : 0);
    } else {
      continue;
    }
    if (++since_commit >= kCommitEvery) {
      if (auto r = parent->commit(); !r) return r;
      since_commit = 0;
    }
  }
  if (auto r = parent->commit(); !r) return r;
  ph = parent->header();
  ph.merge_kind = MergeKind::none;
  ph.merge_peer = Uuid{};
  return parent->write_header(ph);
}

Result<void> finish_absorbing_parent(Layer& child, const Layer& parent, const ProgressFn& progress) {
  Header h = child.header();
  if (h.merge_kind != MergeKind::absorbing_parent || h.merge_peer != parent.header().uuid)
    return fail(Errc::invalid_state, "{} is not absorbing {}", child.path(), parent.path());
  const uint64_t bs = child.block_size(), n = child.entries();
  uint64_t total = 0;
  for (uint64_t i = 0; i < n; ++i)
    if (entry_state(child.entry(i)) == EntryState::unallocated && entry_state(parent.entry(i)) == EntryState::data)
      total += bs;
  std::vector<uint8_t> buf(bs);
  uint64_t done = 0, since_commit = 0;
  for (uint64_t i = 0; i < n; ++i) {
    if (entry_state(child.entry(i)) != EntryState::unallocated) continue;  // the child overrides it
    uint64_t pe = parent.entry(i);
    if (entry_state(pe) == EntryState::data) {
      if (auto r = copy_block(parent, pe, child, i, buf); !r) return r;
      done += bs;
      if (progress) progress(done, total);
    } else if (entry_state(pe) == EntryState::zero) {
      if (!h.new_parent_exists) continue;  // nothing below to hide
      child.set_entry(i, kZeroEntry);
    } else {
      continue;
    }
    if (++since_commit >= kCommitEvery) {
      if (auto r = child.commit(); !r) return r;
      since_commit = 0;
    }
  }
  if (auto r = child.commit(); !r) return r;
  h = child.header();
  h.has_parent = h.new_parent_exists;
  h.parent = h.new_parent_exists ? h.new_parent : ParentLink{};
  h.merge_kind = MergeKind::none;
  h.merge_peer = Uuid{};
  h.new_parent_exists = false;
  h.new_parent = ParentLink{};
  return child.write_header(h);
}

Result<void> merge_into_child(const std::string& parent_path, const std::string& child_path,
                              const ProgressFn& progress) {
  Header newh;
  {
    CAIRN_TRY_CTX(chain, Chain::open(child_path), fmt::format("opening {}", child_path));
    const auto& ls = chain->layers();
    newh = chain->top().header();
    if (ls.size() < 2) return fail(Errc::invalid_argument, "{} has no parent", child_path);
    CAIRN_TRY_CTX(probe, Layer::open(parent_path, false), "opening parent");
    if (!same_file(probe->fd(), ls[1]->fd()))
      return fail(Errc::invalid_argument, "{} is not the parent of {} (that is {})", parent_path, child_path, ls[1]->path());
    if (newh.merge_kind == MergeKind::none) {
      newh.merge_kind = MergeKind::absorbing_parent;
      newh.merge_peer = ls[1]->header().uuid;
      newh.new_parent_exists = ls.size() > 2;
      if (ls.size() > 2)
        newh.new_parent = ParentLink{ls[2]->header().uuid, ls[2]->header().generation,
                                     relative_parent(child_path, ls[2]->path())};
    } else if (newh.merge_kind != MergeKind::absorbing_parent) {
      return fail(Errc::invalid_state, "{} is in the middle of another merge", child_path);
    }
  }
  CAIRN_TRY_CTX(child, Layer::open(child_path, true), "opening child for writing");
  CAIRN_TRY_CTX(parent, Layer::open(parent_path, false), "opening parent");
  if (child->header().merge_kind == MergeKind::none) {
    Header h = child->header();  // fresh: the writable open moved the BAT fields
    h.merge_kind = newh.merge_kind;
    h.merge_peer = newh.merge_peer;
    h.new_parent_exists = newh.new_parent_exists;
    h.new_parent = newh.new_parent;
    if (auto r = child->write_header(h); !r) return r;
  }
  return finish_absorbing_parent(*child, *parent, progress);
}

}  // namespace cairn::disk
