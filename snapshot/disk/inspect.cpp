#include "snapshot/disk/inspect.hpp"

#include <fcntl.h>
#include <sys/mman.h>

#include "snapshot/disk/io.hpp"
#include "vmm/base/unique_fd.hpp"

namespace cairn::disk {

Result<ChainInfo> inspect_chain(const std::string& top) {
  CAIRN_TRY_CTX(chain, Chain::open(top, OpenOptions{.allow_merge_target = true}), top);
  ChainInfo ci;
  for (const auto& l : chain->layers()) {
    const Header& h = l->header();
    LayerInfo li{.path = l->path(),
                 .uuid = uuid_text(h.uuid),
                 .generation = h.generation,
                 .virtual_size = h.virtual_size,
                 .block_size = h.block_size(),
                 .data_blocks = l->data_blocks(),
                 .zero_blocks = l->zero_blocks(),
                 .free_slots = l->free_slots(),
                 .file_bytes = l->file_bytes()};
    if (h.has_parent) {
      li.parent_path = h.parent.path;
      li.parent_uuid = uuid_text(h.parent.uuid);
    }
    if (h.merge_kind == MergeKind::absorbing_child) li.merge_state = "absorbing child " + uuid_text(h.merge_peer);
    if (h.merge_kind == MergeKind::absorbing_parent) li.merge_state = "absorbing parent " + uuid_text(h.merge_peer);
    ci.layers.push_back(std::move(li));
  }
  return ci;
}

Result<std::vector<std::string>> check_layer_file(const std::string& path) {
  std::vector<std::string> notes;
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return fail_errno("opening {}", path);
  std::vector<uint8_t> slots(2 * kHeaderSlotBytes);
  if (auto r = pread_full(fd.get(), 0, slots); !r) return std::unexpected(std::move(r.error()).context(path));
  for (int i = 0; i < 2; ++i) {
    auto h = parse_header(std::span(slots).subspan(i * kHeaderSlotBytes, kHeaderSlotBytes));
    if (!h) notes.push_back(fmt::format("header slot {} is not usable ({}); the other slot is current", i, h.error().message));
  }
  // Full validation: current header, BAT checksum, log replay, every entry.
  CAIRN_TRY_CTX(layer, Layer::open(path, false), "checking");
  if (layer->free_slots())
    notes.push_back(fmt::format("{} data slot(s) unused (left by discards or an interrupted write; reused by later writes)",
                                layer->free_slots()));
  return notes;
}

}  // namespace cairn::disk

namespace cairn::disk {
Result<void> validate_layer_image(std::span<const uint8_t> image) {
  UniqueFd fd(::memfd_create("cairn-layer", MFD_CLOEXEC));
  if (!fd) return fail_errno("memfd_create");
  if (auto r = pwrite_full(fd.get(), 0, image); !r) return r;
  auto l = Layer::open(fmt::format("/proc/self/fd/{}", fd.get()), false);
  if (!l) return std::unexpected(l.error());
  return {};
}
}  // namespace cairn::disk
