#include "vmm/control/protocol.hpp"

#include <array>
#include <utility>

namespace cairn {

using nlohmann::json;

namespace {
constexpr std::array<std::pair<Errc, std::string_view>, 11> kClasses{{
    {Errc::failed, "GenericError"},
    {Errc::invalid_argument, "InvalidParameter"},
    {Errc::invalid_state, "InvalidState"},
    {Errc::not_found, "NotFound"},
    {Errc::access_denied, "AccessDenied"},
    {Errc::out_of_memory, "OutOfMemory"},
    {Errc::no_space, "NoSpace"},
    {Errc::corrupt, "Corrupt"},
    {Errc::unsupported, "Unsupported"},
    {Errc::busy, "Busy"},
    {Errc::timeout, "Timeout"},
}};
}  // namespace

std::string_view control_error_class(Errc code) {
  for (auto& [c, name] : kClasses)
    if (c == code) return name;
  return "GenericError";  // io and anything new
}

Errc control_errc_from_class(std::string_view cls) {
  for (auto& [c, name] : kClasses)
    if (name == cls) return c;
  if (cls == "CommandNotFound") return Errc::invalid_argument;
  return Errc::failed;
}

json control_ok(json ret) { return {{"return", ret.is_null() ? json::object() : std::move(ret)}}; }

json control_error(std::string_view cls, std::string_view desc) {
  return {{"error", {{"class", std::string(cls)}, {"desc", std::string(desc)}}}};
}

json control_error(const Error& e) { return control_error(control_error_class(e.code), e.message); }

Result<json> control_reply_result(const json& reply) {
  if (!reply.is_object()) return fail(Errc::corrupt, "the control reply is not a JSON object");
  if (auto r = reply.find("return"); r != reply.end()) return *r;
  if (auto e = reply.find("error"); e != reply.end() && e->is_object()) {
    std::string cls = "GenericError", desc = "(no description)";
    if (auto c = e->find("class"); c != e->end() && c->is_string()) cls = c->get<std::string>();
    if (auto d = e->find("desc"); d != e->end() && d->is_string()) desc = d->get<std::string>();
    return std::unexpected(Error{control_errc_from_class(cls), desc});
  }
  return fail(Errc::corrupt, "the control reply has neither \"return\" nor \"error\"");
}

}  // namespace cairn
