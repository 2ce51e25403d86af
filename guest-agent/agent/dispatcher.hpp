// The agent's command dispatcher: one JSON request in, one reply out (see
// guest-agent/protocol/qga.hpp for the shapes). It owns the frozen state,
// which outlives any one connection: a host may freeze on one connection and
// thaw on the next. While frozen only the commands qemu-ga allows then are
// accepted (ping, info, sync, sync-delimited, fsfreeze-status, fsfreeze-thaw);
// the rest get CommandNotFound "... has been disabled". If no thaw arrives
// within the freeze timeout the agent thaws by itself (as Windows VSS limits a
// freeze to 10 s), so a lost host never leaves the guest frozen.
#pragma once
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "guest-agent/agent/freezer.hpp"
#include "guest-agent/protocol/json_stream.hpp"

namespace cairn {

inline constexpr std::chrono::milliseconds kDefaultFreezeTimeout{10'000};
inline constexpr const char* kAgentVersion = "cairn-agent 1.0";
// {} -> {"frozen-ms": N, "thaw-ms": N, "filesystems": N}: the last freeze,
// frozen to thawed as the guest timed it, and of that the FITHAW calls
// (qemu-ga has no such command).
inline constexpr std::string_view kFreezeWindowCommand = "cairn-fsfreeze-window";

class Dispatcher {
 public:
  using Clock = std::chrono::steady_clock;

  Dispatcher(FreezeController& freezer, std::chrono::milliseconds freeze_timeout)
      : freezer_(freezer), freeze_timeout_(freeze_timeout) {}

  // The bytes to send back for one frame (a reply line, maybe after 0xFF).
  std::string handle(const JsonFrame& frame, Clock::time_point now = Clock::now());

  bool frozen() const { return frozen_; }
  // When the agent will thaw by itself, while frozen.
  std::optional<Clock::time_point> thaw_deadline() const;
  // Thaws when the deadline has passed; true when it did.
  bool on_timer(Clock::time_point now);
  // Thaws if frozen (the agent is exiting).
  void shutdown();
  // Counters for logs and tests.
  int auto_thaws() const { return auto_thaws_; }

 private:
  nlohmann::json execute(const std::string& name, const nlohmann::json& args, Clock::time_point now);
  nlohmann::json info() const;

  FreezeController& freezer_;
  std::chrono::milliseconds freeze_timeout_;
  bool frozen_ = false;
  Clock::time_point frozen_at_{};
  int auto_thaws_ = 0;
};

}  // namespace cairn
