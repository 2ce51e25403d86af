// A VMM's guest memory as the memory image code sees it.
#pragma once
#include <vector>

#include "snapshot/memory/memory_image.hpp"
#include "vmm/base/guest_memory.hpp"

namespace cairn::snap {

// Every region of `mem`, with its host mapping and memfd.
inline std::vector<RamRegion> ram_regions(const GuestMemory& mem) {
  std::vector<RamRegion> out;
  for (auto& r : mem.regions()) out.push_back({r.gpa, r.size, r.host(), r.memfd.get()});
  return out;
}

}  // namespace cairn::snap
