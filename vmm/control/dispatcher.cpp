#include "vmm/control/dispatcher.hpp"

#include "vmm/control/protocol.hpp"

namespace cairn {

using nlohmann::json;

void ControlDispatcher::add(std::string command, ControlHandler handler) {
  handlers_[std::move(command)] = std::move(handler);
}

std::vector<std::string> ControlDispatcher::commands() const {
  std::vector<std::string> out;
  for (auto& [name, h] : handlers_) out.push_back(name);
  return out;
}

json ControlDispatcher::dispatch(const json& request) const {
  if (!request.is_object()) return control_error("InvalidParameter", "a request must be a JSON object");
  auto cmd = request.find("command");
  if (cmd == request.end() || !cmd->is_string())
    return control_error("InvalidParameter", "a request needs \"command\": a string");
  json args = json::object();
  if (auto a = request.find("arguments"); a != request.end() && !a->is_null()) {
    if (!a->is_object()) return control_error("InvalidParameter", "\"arguments\" must be an object");
    args = *a;
  }
  const std::string& name = cmd->get_ref<const std::string&>();
  auto it = handlers_.find(name);
  if (it == handlers_.end())
    return control_error("CommandNotFound", fmt::format("unknown command '{}'", name.substr(0, 64)));
  try {
    auto r = it->second(args);
    if (!r) return control_error(r.error());
    return control_ok(std::move(*r));
  } catch (const std::exception& e) {
    return control_error("GenericError", fmt::format("command '{}' failed: {}", name, e.what()));
  }
}

json ControlDispatcher::dispatch_line(std::string_view line) const {
  json request = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (request.is_discarded()) return control_error("InvalidParameter", "the request is not valid JSON");
  return dispatch(request);
}

}  // namespace cairn
