// The qemu-guest-agent (QGA) wire protocol as cairn speaks it, on both sides.
//
// Request:  {"execute": NAME, "arguments": {...}, "id": ANY}
//           "arguments" and "id" are optional; any other member is an error.
// Reply:    {"return": VALUE}  or  {"error": {"class": CLASS, "desc": TEXT}}
//           plus the request's "id" when it had one; one reply per request,
//           each followed by '\n'. The reply to guest-sync-delimited is
//           preceded by one 0xFF byte.
// Framing of both directions: see json_stream.hpp.
//
// Commands and the JSON shapes of their results (qemu's qga/qapi-schema.json):
//   guest-sync {"id": int}             -> the same int
//   guest-sync-delimited {"id": int}   -> the same int (after 0xFF)
//   guest-ping                         -> {}
//   guest-info                         -> {"version": str, "supported_commands":
//                                           [{"name": str, "enabled": bool,
//                                             "success-response": bool}, ...]}
//   guest-fsfreeze-status              -> "thawed" | "frozen"
//   guest-fsfreeze-freeze              -> int (file systems frozen)
//   guest-fsfreeze-thaw                -> int (file systems thawed)
//
// qemu-ga has no default vsock port (it takes `-p CID:PORT`); cairn uses
// kAgentVsockPort on both sides, so start a stock agent with
// `qemu-ga --method=vsock-listen --path=3:1234`.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace cairn {

inline constexpr uint32_t kAgentVsockPort = 1234;
inline constexpr char kAgentDelimiter = static_cast<char>(0xFF);

// Error classes qemu's dispatcher uses.
inline constexpr std::string_view kGenericError = "GenericError";
inline constexpr std::string_view kCommandNotFound = "CommandNotFound";

}  // namespace cairn
