// `cairn checkpoint show --machine`: the saved machine of a checkpoint, as
// people read it (snapshot/state/state_report.hpp).
#include "snapshot/memory/file_io.hpp"
#include "snapshot/state/container.hpp"
#include "snapshot/state/state_report.hpp"
#include "vmm/checkpoint/checkpoint_ops.hpp"

namespace cairn {

Result<std::string> describe_saved_machine(const VmSession& s, const tree::Checkpoint& c) {
  if (!c.has_memory)
    return fail(Errc::invalid_argument, "checkpoint '{}' holds disks only: no machine state was saved", c.name);
  const std::string path = s.cp.checkpoint_dir(c.id) + "/state.bin";
  auto bytes = snap::read_small_file(path, snap::kStateMaxFileBytes);
  if (!bytes) return std::unexpected(std::move(bytes.error()).context(fmt::format("checkpoint '{}'", c.name)));
  auto st = snap::decode_machine_state(*bytes, path);
  if (!st) return std::unexpected(st.error());
  return snap::describe_machine_state(*st);
}

}  // namespace cairn
