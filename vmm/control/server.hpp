// The control socket server of a running VM: one thread that accepts clients
// and answers their requests (protocol.hpp) through a ControlDispatcher.
// Up to kMaxControlClients connections are open at once (more wait in the
// listen backlog); their requests are handled one at a time, in arrival
// order. A client that sends nothing for kControlIdleTimeoutMs, or a line
// longer than kMaxControlLine, is dropped, so an idle or stuck client never
// keeps others out.
#pragma once
#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "vmm/base/error.hpp"
#include "vmm/base/unique_fd.hpp"
#include "vmm/control/dispatcher.hpp"

namespace cairn {

inline constexpr size_t kMaxControlClients = 16;

class ControlServer {
 public:
  // Listens on `path` (mode 0600; the caller removes a stale file first) and
  // starts serving.
  static Result<std::unique_ptr<ControlServer>> start(const std::string& path,
                                                      std::shared_ptr<const ControlDispatcher> dispatcher);
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // Stops serving (the request being answered completes), joins the thread,
  // removes the socket file. Idempotent.
  void stop();
  const std::string& path() const { return path_; }

 private:
  ControlServer() = default;
  struct Client;
  void serve();
  // Reads what `c` sent and answers its complete lines; false: drop it.
  bool on_readable(Client& c);

  std::string path_;
  std::shared_ptr<const ControlDispatcher> dispatcher_;
  UniqueFd listen_fd_;
  UniqueFd stop_fd_;  // eventfd: wakes the thread for stop()
  std::thread thread_;
};

}  // namespace cairn
