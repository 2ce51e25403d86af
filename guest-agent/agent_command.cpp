// `cairn agent [VM] ping|info|fsfreeze-status|freeze|thaw`: talk to a VM's
// guest agent (cairn-agent or a stock qemu-ga listening on vsock).
// The VM is found by name in $CAIRN_HOME/vms (see client/vm_endpoint.hpp), or
// given directly: --socket PATH (the VM's hybrid vsock socket, as passed to
// `cairn run --vsock CID,PATH`) or --unix PATH (a socket that carries QGA
// itself, e.g. the agent's own --unix socket or a QEMU chardev).
#include <fmt/format.h>

#include <memory>

#include "guest-agent/client/agent_client.hpp"
#include "guest-agent/client/vm_endpoint.hpp"
#include "vmm/cli/commands.hpp"
#include "vmm/cli/exit_codes.hpp"

namespace cairn {

namespace {

struct AgentCliOptions {
  std::string vm;
  std::string socket;
  std::string unix_path;
  uint32_t port = kAgentVsockPort;
  double timeout_s = 10;
  double connect_timeout_s = 5;
  bool json = false;
};

Result<AgentClient> open_client(const AgentCliOptions& o) {
  AgentEndpoint ep;
  int given = !o.vm.empty() + !o.socket.empty() + !o.unix_path.empty();
  if (given != 1) return fail(Errc::invalid_argument, "name the VM, or give exactly one of --socket PATH or --unix PATH");
  if (!o.socket.empty()) {
    ep.path = o.socket;
  } else if (!o.unix_path.empty()) {
    ep.kind = AgentEndpoint::Kind::unix_socket;
    ep.path = o.unix_path;
  } else {
    auto r = vm_agent_endpoint(cairn_home(), o.vm);
    if (!r) return std::unexpected(r.error());
    ep = *r;
  }
  ep.port = o.port;
  AgentTimeouts t;
  t.connect = std::chrono::milliseconds(static_cast<long long>(o.connect_timeout_s * 1000));
  t.reply = std::chrono::milliseconds(static_cast<long long>(o.timeout_s * 1000));
  return AgentClient::connect(ep, t);
}

// Runs `fn(client)` and maps errors to exit codes.
int with_client(const AgentCliOptions& o, const std::function<Result<void>(AgentClient&)>& fn) {
  auto c = open_client(o);
  if (!c) return report_error(c.error());
  auto r = fn(*c);
  if (!r) return report_error(r.error());
  return kExitOk;
}

void print_json(const nlohmann::json& j) { fmt::print("{}\n", j.dump(2)); }

}  // namespace

void register_agent_commands(CLI::App& app, CliContext& ctx) {
  auto* agent = app.add_subcommand("agent", "Talk to a VM's guest agent (qemu-guest-agent protocol over vsock)");
  agent->require_subcommand(1);
  agent->fallthrough();
  auto o = std::make_shared<AgentCliOptions>();
  agent->add_option("vm", o->vm, "VM name (its socket is read from $CAIRN_HOME/vms/VM/config.json)");
  agent->add_option("--socket", o->socket, "the VM's hybrid vsock Unix socket (cairn run --vsock CID,PATH)");
  agent->add_option("--unix", o->unix_path, "a Unix socket that carries the agent protocol directly");
  agent->add_option("--port", o->port, "the agent's vsock port")->capture_default_str()->check(CLI::Range(1u, 0xfffffffeu));
  agent->add_option("--timeout", o->timeout_s, "seconds to wait for each reply")->capture_default_str()
      ->check(CLI::Range(0.001, 3600.0));
  agent->add_option("--connect-timeout", o->connect_timeout_s, "seconds to wait for the connection and first sync")
      ->capture_default_str()->check(CLI::Range(0.001, 3600.0));
  agent->add_flag("--json", o->json, "print the agent's reply as JSON");
  agent->footer("Examples:\n  cairn agent myvm ping\n  cairn agent --socket /tmp/vm.vsock freeze\n"
                "Exit codes: 4 no agent reachable, 11 no reply in time, 3 command disabled (e.g. freeze while frozen).");

  auto* ping = agent->add_subcommand("ping", "Check that the guest agent answers");
  on_run(ping, ctx, [o] {
    return with_client(*o, [&](AgentClient& c) -> Result<void> {
      if (auto r = c.ping(); !r) return r;
      if (o->json) print_json(nlohmann::json::object());
      else fmt::print("guest agent answered\n");
      return {};
    });
  });

  auto* info = agent->add_subcommand("info", "Show the agent's version and commands");
  on_run(info, ctx, [o] {
    return with_client(*o, [&](AgentClient& c) -> Result<void> {
      if (o->json) {
        auto r = c.execute("guest-info");
        if (!r) return std::unexpected(r.error());
        print_json(*r);
        return {};
      }
      auto r = c.info();
      if (!r) return std::unexpected(r.error());
      fmt::print("version: {}\n", r->version);
      for (const auto& cmd : r->commands) fmt::print("  {}{}\n", cmd.name, cmd.enabled ? "" : " (disabled)");
      return {};
    });
  });

  auto* status = agent->add_subcommand("fsfreeze-status", "Tell whether the guest's file systems are frozen");
  status->alias("status");
  on_run(status, ctx, [o] {
    return with_client(*o, [&](AgentClient& c) -> Result<void> {
      auto r = c.fsfreeze_status();
      if (!r) return std::unexpected(r.error());
      std::string s = *r == FreezeStatus::frozen ? "frozen" : "thawed";
      if (o->json) print_json(s);
      else fmt::print("{}\n", s);
      return {};
    });
  });

  auto* freeze = agent->add_subcommand("freeze", "Freeze the guest's file systems (the agent thaws them by itself "
                                                 "after its freeze timeout)");
  on_run(freeze, ctx, [o] {
    return with_client(*o, [&](AgentClient& c) -> Result<void> {
      auto r = c.fsfreeze_freeze();
      if (!r) return std::unexpected(r.error());
      if (o->json) print_json(*r);
      else fmt::print("frozen: {} file system{}\n", *r, *r == 1 ? "" : "s");
      return {};
    });
  });

  auto* thaw = agent->add_subcommand("thaw", "Thaw the guest's file systems");
  on_run(thaw, ctx, [o] {
    return with_client(*o, [&](AgentClient& c) -> Result<void> {
      auto r = c.fsfreeze_thaw();
      if (!r) return std::unexpected(r.error());
      if (o->json) print_json(*r);
      else fmt::print("thawed: {} file system{}\n", *r, *r == 1 ? "" : "s");
      return {};
    });
  });
}

}  // namespace cairn
