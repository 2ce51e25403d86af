// The client side of the control socket (protocol.hpp): used by the CLI.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "vmm/base/error.hpp"
#include "vmm/base/unique_fd.hpp"

namespace cairn {

class ControlClient {
 public:
  // Connects to the socket at `path` (see unix_connect for the error kinds).
  static Result<ControlClient> connect(const std::string& path, int timeout_ms = 5000);

  // Sends one request and waits up to `timeout_ms` for its reply; returns the
  // "return" object, or the reply's error as an Error (Errc from its class).
  Result<nlohmann::json> call(std::string_view command, const nlohmann::json& args = nlohmann::json::object(),
                              int timeout_ms = 5000);
  // Sends one raw line (a "\n" is added) and returns the parsed reply object.
  Result<nlohmann::json> request_line(std::string_view line, int timeout_ms = 5000);

 private:
  explicit ControlClient(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
  std::string buf_;  // bytes received after the last reply
};

// One request on a fresh connection.
Result<nlohmann::json> control_call(const std::string& socket_path, std::string_view command,
                                    const nlohmann::json& args = nlohmann::json::object(), int timeout_ms = 5000);

}  // namespace cairn
