// Host side of the guest agent: a QGA client with timeouts and typed errors,
// for cairn's own agent and a stock qemu-ga alike.
//
// Endpoints:
//  - hybrid vsock (cairn's virtio-vsock, Firecracker style): connect to the
//    VM's Unix socket, write "CONNECT <port>\n", expect "OK <n>\n";
//  - a plain Unix socket that carries QGA directly (the agent's --unix
//    socket, or a QEMU chardev for virtio-serial).
// On connect the client resynchronises as qemu's schema asks: it sends 0xFF
// and guest-sync-delimited with a random id and drops everything until the
// reply carrying that id.
//
// Errors: Errc::not_found (no such socket, nobody listening, or no agent on
// the port), Errc::timeout (no reply in time; the connection is then unusable),
// Errc::invalid_state (the command is disabled, e.g. freeze while frozen),
// Errc::unsupported (the agent does not know the command), Errc::corrupt (a
// reply that is not QGA), Errc::failed (the agent reported an error).
#pragma once
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "guest-agent/protocol/json_stream.hpp"
#include "guest-agent/protocol/qga.hpp"
#include "vmm/base/error.hpp"
#include "vmm/base/unique_fd.hpp"

namespace cairn {

struct AgentEndpoint {
  enum class Kind { hybrid_vsock, unix_socket } kind = Kind::hybrid_vsock;
  std::string path;
  uint32_t port = kAgentVsockPort;  // hybrid vsock only
};

struct AgentTimeouts {
  std::chrono::milliseconds connect{5000};  // socket connect + CONNECT/OK + first sync
  std::chrono::milliseconds reply{10000};   // each command (freeze may take a while: sync)
};

struct AgentCommandInfo {
  std::string name;
  bool enabled = false;
  bool success_response = false;
};

struct AgentInfo {
  std::string version;
  std::vector<AgentCommandInfo> commands;
};

enum class FreezeStatus { thawed, frozen };

class AgentClient {
 public:
  static Result<AgentClient> connect(const AgentEndpoint& endpoint, AgentTimeouts timeouts = {});

  // Sends one command and returns its "return" value.
  Result<nlohmann::json> execute(std::string_view command, const nlohmann::json& arguments = nullptr);
  // guest-sync-delimited with a fresh random id; done on connect.
  Result<void> sync();

  Result<void> ping();
  Result<AgentInfo> info();
  Result<FreezeStatus> fsfreeze_status();
  Result<int64_t> fsfreeze_freeze();  // number of file systems frozen
  Result<int64_t> fsfreeze_thaw();    // number thawed
  // cairn's agent only (CommandNotFound from qemu-ga): the last freeze's
  // window, frozen to thawed, and of that the thaw, in milliseconds as the
  // guest timed them.
  struct FreezeWindow {
    double frozen_ms = 0;
    double thaw_ms = 0;
  };
  Result<FreezeWindow> freeze_window();

 private:
  AgentClient(UniqueFd fd, AgentTimeouts t) : fd_(std::move(fd)), timeouts_(t) {}
  Result<void> send(std::string_view bytes, std::chrono::steady_clock::time_point deadline);
  // The next complete reply object.
  Result<nlohmann::json> next_reply(std::chrono::steady_clock::time_point deadline);

  UniqueFd fd_;
  AgentTimeouts timeouts_;
  JsonStreamReader reader_;
  std::vector<JsonFrame> pending_;
  bool broken_ = false;  // a timeout left a reply in flight; sync() repairs
};

// Maps a QGA {"error": {...}} object to a typed error.
Error agent_error(std::string_view command, const nlohmann::json& error);

}  // namespace cairn
