// The agent's listening sockets and event loop: AF_VSOCK (the guest side of
// virtio-vsock) and/or a Unix socket (tests, local use). Several clients may
// be connected at once; each has its own stream reader, all share the one
// Dispatcher (and so the frozen state). A client that disconnects, sends
// garbage or stops reading is dropped without touching the others. The loop
// wakes for the auto-thaw deadline too.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "guest-agent/agent/dispatcher.hpp"
#include "vmm/base/error.hpp"
#include "vmm/base/unique_fd.hpp"

namespace cairn {

struct ServerOptions {
  std::optional<uint32_t> vsock_port;  // listen on AF_VSOCK, any CID
  std::string unix_path;               // listen on this Unix socket too (replaces a stale one)
  size_t max_clients = 16;
};

class AgentServer {
 public:
  static Result<std::unique_ptr<AgentServer>> create(Dispatcher& dispatcher, const ServerOptions& options);
  ~AgentServer();
  AgentServer(const AgentServer&) = delete;
  AgentServer& operator=(const AgentServer&) = delete;

  // Serves until stop() is called; an error only when polling itself fails.
  Result<void> run();
  // Async-signal-safe and thread-safe: makes run() return.
  void stop();

 private:
  struct Client;
  explicit AgentServer(Dispatcher& d);
  void accept_from(int listen_fd);
  bool serve(Client& c);  // false: drop the client

  Dispatcher& dispatcher_;
  ServerOptions options_;
  std::vector<UniqueFd> listeners_;
  std::vector<std::unique_ptr<Client>> clients_;
  UniqueFd wake_read_, wake_write_;
};

}  // namespace cairn
