// The table of control commands: command name -> handler.
//
// How to add a command (e.g. from the checkpoint area): write a function
//   void add_my_handlers(ControlDispatcher& d, VmControlContext& vm)
// that calls d.add("my-command", handler) for each command, and call it from
// build_vm_dispatcher() in vmm/control/vm_handlers.cpp (one line). A handler
// receives the request's "arguments" object ({} when absent) and returns the
// "return" object or an Error (its Errc becomes the error "class", see
// protocol.hpp). Handlers run one at a time on the control server's thread, so
// a handler may block (pause, save state) but should finish within seconds:
// clients wait for the reply. A handler that throws gets a GenericError reply.
#pragma once
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "vmm/base/error.hpp"

namespace cairn {

using ControlHandler = std::function<Result<nlohmann::json>(const nlohmann::json& args)>;

class ControlDispatcher {
 public:
  // Adds the handler of `command`, replacing any earlier one. Not thread-safe:
  // fill the table before the server starts.
  void add(std::string command, ControlHandler handler);
  bool has(std::string_view command) const { return handlers_.find(command) != handlers_.end(); }
  std::vector<std::string> commands() const;

  // One request (a parsed JSON value or a raw line) -> one reply object. Never throws.
  nlohmann::json dispatch(const nlohmann::json& request) const;
  nlohmann::json dispatch_line(std::string_view line) const;

 private:
  std::map<std::string, ControlHandler, std::less<>> handlers_;
};

}  // namespace cairn
