// A process that outlives its caller (a detached VMM, a background job) must
// not keep the caller's descriptors open: `$(cairn ...)` reads its pipe to EOF.
#pragma once

namespace cairn {
// Closes every open fd above stderr except `keep` (-1: none).
void close_inherited_fds(int keep);
}  // namespace cairn
