// The control socket protocol of a running VM.
//
// Transport: a Unix stream socket, <state folder>/control.sock, mode 0600
// (only the VM's owner may talk to it). A client sends requests and reads
// replies, one JSON object per line ("\n"-terminated, UTF-8), strictly one
// reply per request, in order. A line may be at most kMaxControlLine bytes
// including its "\n"; a longer one gets an error reply and the connection is
// closed. A connection idle for kControlIdleTimeoutMs is closed by the server.
//
// Request:   {"command": "status"}
//            {"command": "NAME", "arguments": {...}}      "arguments" optional, an object
// Success:   {"return": {...}}                            always an object ({} when empty)
// Failure:   {"error": {"class": "InvalidState", "desc": "the VM is not paused"}}
//
// Error classes (one per cairn error kind, Errc in vmm/base/error.hpp):
//   GenericError (failed, io), InvalidParameter, InvalidState, NotFound,
//   AccessDenied, OutOfMemory, NoSpace, Corrupt, Unsupported, Busy, Timeout;
//   CommandNotFound (no handler for "command"), and a malformed or oversized
//   request is InvalidParameter.
//
// Commands of a running VM (vm_handlers.hpp; other areas add theirs there):
//   status  -> {"state": "running"|"paused", "pid": N, "uptime_ms": N,
//               "vcpus": N, "memory": BYTES, "name": "...", "id": "..."}
//   pause   -> {"state": "paused"}     idempotent
//   resume  -> {"state": "running"}    idempotent
//   stop    -> {}  the VM ends with the outcome "stopped"; the VMM exits 0
//   checkpoint-save, disk-merge, disks: see checkpoint_handlers.cpp
#pragma once
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "vmm/base/error.hpp"

namespace cairn {

inline constexpr size_t kMaxControlLine = 64 * 1024;
inline constexpr int kControlIdleTimeoutMs = 5000;

// Errc <-> the "class" of an error reply.
std::string_view control_error_class(Errc code);
Errc control_errc_from_class(std::string_view cls);

// The reply objects, serialized without the trailing newline.
nlohmann::json control_ok(nlohmann::json ret = nlohmann::json::object());
nlohmann::json control_error(const Error& e);
nlohmann::json control_error(std::string_view cls, std::string_view desc);

// A reply back into a Result: {"return": X} -> X, {"error": ...} -> Error.
Result<nlohmann::json> control_reply_result(const nlohmann::json& reply);

}  // namespace cairn
