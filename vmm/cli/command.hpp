// How an area adds its subcommands to the `cairn` CLI: it registers them on
// the root app and, from the parsed subcommand's callback, stores the action
// that main() runs after parsing. An action returns the process exit code.
#pragma once
#include <functional>

#include <CLI/CLI.hpp>

namespace cairn {

struct CliContext {
  std::function<int()> action;  // set by the chosen subcommand
};

// Helper: run `fn` as the action when `sub` is the parsed subcommand.
inline void on_run(CLI::App* sub, CliContext& ctx, std::function<int()> fn) {
  sub->callback([&ctx, fn = std::move(fn)] { ctx.action = fn; });
}

}  // namespace cairn
