#include "guest-agent/agent/dispatcher.hpp"

#include <array>
#include <cstdio>

#include "guest-agent/protocol/qga.hpp"

namespace cairn {

using nlohmann::json;

namespace {

// A command failed: carried out of execute() to become {"error": ...}.
struct QgaError {
  std::string_view cls;
  std::string desc;
};

struct CommandSpec {
  std::string_view name;
  bool allowed_frozen;  // qemu-ga's freeze allow-list
  bool takes_id;        // {"id": int} argument (the sync commands)
};

constexpr std::array<CommandSpec, 8> kCommands{{
    {"guest-sync-delimited", true, true},
    {"guest-sync", true, true},
    {"guest-ping", true, false},
    {"guest-info", true, false},
    {"guest-fsfreeze-status", true, false},
    {"guest-fsfreeze-freeze", false, false},
    {"guest-fsfreeze-thaw", true, false},
    // cairn's own, outside qemu-ga's "guest-" names: how long the last freeze
    // held the guest's file systems, timed in the guest.
    {kFreezeWindowCommand, true, false},
}};

const CommandSpec* find_command(std::string_view name) {
  for (const auto& c : kCommands)
    if (c.name == name) return &c;
  return nullptr;
}

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

json error_reply(std::string_view cls, std::string_view desc) {
  return json{{"error", {{"class", cls}, {"desc", desc}}}};
}

// Checks the arguments object against what the command takes.
void check_arguments(const CommandSpec& spec, const json& args) {
  if (!args.is_object()) throw QgaError{kGenericError, "QMP input member 'arguments' must be an object"};
  for (const auto& [key, value] : args.items()) {
    if (spec.takes_id && key == "id") continue;
    throw QgaError{kGenericError, "Parameter '" + key + "' is unexpected"};
  }
  if (spec.takes_id) {
    if (!args.contains("id")) throw QgaError{kGenericError, "Parameter 'id' is missing"};
    if (!args["id"].is_number_integer())
      throw QgaError{kGenericError, "Invalid parameter type for 'id', expected: integer"};
  }
}

}  // namespace

json Dispatcher::info() const {
  json cmds = json::array();
  for (const auto& c : kCommands)
    cmds.push_back({{"name", c.name}, {"enabled", !frozen_ || c.allowed_frozen}, {"success-response", true}});
  return json{{"version", kAgentVersion}, {"supported_commands", cmds}};
}

json Dispatcher::execute(const std::string& name, const json& args, Clock::time_point now) {
  if (name == "guest-sync" || name == "guest-sync-delimited") return args["id"];
  if (name == "guest-ping") return json::object();
  if (name == "guest-info") return info();
  if (name == "guest-fsfreeze-status") return frozen_ ? "frozen" : "thawed";
  if (name == "guest-fsfreeze-freeze") {
    auto n = freezer_.freeze();
    if (!n) throw QgaError{kGenericError, n.error().message};
    if (*n > 0) {
      frozen_ = true;
      frozen_at_ = now;
    }
    return *n;
  }
  if (name == "guest-fsfreeze-thaw") {
    auto n = freezer_.thaw(/*run_hooks=*/frozen_);
    if (!n) throw QgaError{kGenericError, n.error().message};
    frozen_ = false;
    return *n;
  }
  if (name == kFreezeWindowCommand) {
    auto w = freezer_.last_window();
    if (!w) throw QgaError{kGenericError, "no freeze has been thawed yet"};
    return json{{"frozen-ms", std::chrono::duration<double, std::milli>(w->frozen).count()},
                {"thaw-ms", std::chrono::duration<double, std::milli>(w->thaw).count()},
                {"filesystems", w->filesystems}};
  }
  throw QgaError{kCommandNotFound, "The command " + name + " has not been found"};
}

std::string Dispatcher::handle(const JsonFrame& frame, Clock::time_point now) {
  on_timer(now);
  if (frame.kind == JsonFrame::error) return dump(error_reply(kGenericError, frame.data)) + "\n";
  json req = json::parse(frame.data, nullptr, /*allow_exceptions=*/false);
  json id;
  bool delimited = false;
  json reply;
  try {
    if (req.is_discarded()) throw QgaError{kGenericError, "JSON parse error: malformed request"};
    if (!req.is_object()) throw QgaError{kGenericError, "QMP input must be a JSON object"};
    if (req.contains("id")) id = req["id"];
    for (const auto& [key, value] : req.items())
      if (key != "execute" && key != "arguments" && key != "id")
        throw QgaError{kGenericError, "QMP input member '" + key + "' is unexpected"};
    if (!req.contains("execute")) throw QgaError{kGenericError, "QMP input lacks member 'execute'"};
    if (!req["execute"].is_string()) throw QgaError{kGenericError, "QMP input member 'execute' must be a string"};
    std::string name = req["execute"].get<std::string>();
    const CommandSpec* spec = find_command(name);
    if (!spec) throw QgaError{kCommandNotFound, "The command " + name + " has not been found"};
    if (frozen_ && !spec->allowed_frozen)
      throw QgaError{kCommandNotFound, "Command " + name + " has been disabled: the file systems are frozen"};
    json args = req.contains("arguments") ? req["arguments"] : json::object();
    check_arguments(*spec, args);
    delimited = name == "guest-sync-delimited";
    reply = json{{"return", execute(name, args, now)}};
  } catch (const QgaError& e) {
    reply = error_reply(e.cls, e.desc);
  } catch (const std::exception& e) {
    reply = error_reply(kGenericError, std::string("internal error: ") + e.what());
  }
  if (!id.is_null()) reply["id"] = id;
  std::string out;
  if (delimited) out.push_back(kAgentDelimiter);
  out += dump(reply);
  out.push_back('\n');
  return out;
}

std::optional<Dispatcher::Clock::time_point> Dispatcher::thaw_deadline() const {
  if (!frozen_) return std::nullopt;
  return frozen_at_ + freeze_timeout_;
}

bool Dispatcher::on_timer(Clock::time_point now) {
  if (!frozen_ || now < frozen_at_ + freeze_timeout_) return false;
  auto n = freezer_.thaw(/*run_hooks=*/true);
  if (!n) {
    // Only listing the mounts can fail here; try again in a second.
    std::fprintf(stderr, "cairn-agent: automatic thaw failed: %s\n", n.error().message.c_str());
    frozen_at_ = now - freeze_timeout_ + std::chrono::seconds(1);
    return false;
  }
  std::fprintf(stderr, "cairn-agent: no thaw within %lld ms: thawed %d file systems by itself\n",
               static_cast<long long>(freeze_timeout_.count()), *n);
  frozen_ = false;
  ++auto_thaws_;
  return true;
}

void Dispatcher::shutdown() {
  if (!frozen_) return;
  (void)freezer_.thaw(/*run_hooks=*/true);
  frozen_ = false;
}

}  // namespace cairn
