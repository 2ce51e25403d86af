#include "guest-agent/client/vm_endpoint.hpp"

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace cairn {

using nlohmann::json;

std::string cairn_home() {
  if (const char* h = std::getenv("CAIRN_HOME"); h && *h) return h;
  if (const char* h = std::getenv("XDG_DATA_HOME"); h && *h) return std::string(h) + "/cairn";
  if (const char* h = std::getenv("HOME"); h && *h) return std::string(h) + "/.local/share/cairn";
  return ".local/share/cairn";
}

namespace {
std::string vsock_path_of(const json& cfg) {
  auto m = cfg.find("machine");
  if (m == cfg.end() || !m->is_object()) return "";
  auto v = m->find("vsock");
  if (v == m->end() || !v->is_object()) return "";
  auto p = v->find("uds_path");
  return p != v->end() && p->is_string() ? p->get<std::string>() : "";
}
}  // namespace

Result<AgentEndpoint> vm_agent_endpoint(const std::string& home, const std::string& vm_name) {
  if (vm_name.empty() || vm_name == "." || vm_name == ".." || vm_name.find('/') != std::string::npos)
    return fail(Errc::invalid_argument, "'{}' is not a valid VM name", vm_name);
  std::string dir = home + "/vms/" + vm_name;
  std::string file = dir + "/config.json";
  std::ifstream in(file);
  if (!in) return fail(Errc::not_found, "no VM named '{}' ({} not found; or give --socket PATH)", vm_name, file);
  std::stringstream ss;
  ss << in.rdbuf();
  json cfg = json::parse(ss.str(), nullptr, false);
  if (cfg.is_discarded() || !cfg.is_object()) return fail(Errc::corrupt, "{} is not a JSON object", file);
  std::string path = vsock_path_of(cfg);
  if (path.empty())
    return fail(Errc::invalid_state, "VM '{}' has no virtio-vsock device, so no guest agent can be reached", vm_name);
  if (path[0] != '/') path = dir + "/" + path;
  AgentEndpoint ep;
  ep.kind = AgentEndpoint::Kind::hybrid_vsock;
  ep.path = path;
  return ep;
}

}  // namespace cairn
