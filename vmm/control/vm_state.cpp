#include "vmm/control/vm_state.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include "vmm/control/client.hpp"
#include "vmm/vmstore/vm_lock.hpp"

namespace cairn {

std::string_view to_string(VmRunState s) {
  switch (s) {
    case VmRunState::off: return "off";
    case VmRunState::running: return "running";
    case VmRunState::paused: return "paused";
  }
  return "unknown";
}

Result<bool> remove_stale_socket(const VmPaths& p) {
  struct stat st {};
  if (::lstat(p.control_socket.c_str(), &st) != 0) return false;
  auto lock = VmLock::try_acquire(p.lock);
  if (!lock) {
    if (lock.error().code == Errc::busy) return false;  // a VMM owns it: not stale
    return std::unexpected(lock.error());
  }
  if (::unlink(p.control_socket.c_str()) != 0 && errno != ENOENT)
    return fail_errno("removing stale control socket {}", p.control_socket);
  return true;
}

Result<VmState> query_vm_state(const VmPaths& p, int timeout_ms) {
  auto lock = probe_lock(p.lock);
  if (!lock) return std::unexpected(lock.error());
  VmState s;
  if (!lock->held) {
    if (auto r = remove_stale_socket(p); !r) return std::unexpected(r.error());
    return s;
  }
  s.state = VmRunState::running;
  s.pid = lock->pid;
  auto st = control_call(p.control_socket, "status", nlohmann::json::object(), timeout_ms);
  if (!st) {
    s.unreachable_why = st.error().message;
    return s;
  }
  // Only a well-formed reply counts: the CLI must not trip over a bad one.
  auto state = st->find("state");
  auto pid = st->find("pid");
  auto up = st->find("uptime_ms");
  if (!st->is_object() || state == st->end() || !state->is_string() || pid == st->end() ||
      !pid->is_number_integer() || up == st->end() || !up->is_number_integer()) {
    s.unreachable_why = "the VM's status reply is malformed";
    return s;
  }
  s.answered = true;
  s.status = *st;
  if (*state == "paused") s.state = VmRunState::paused;
  s.pid = pid->get<pid_t>();
  return s;
}

}  // namespace cairn
