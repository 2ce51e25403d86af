// Typed errors: every fallible call returns Result<T>; the CLI maps Errc to an exit code.
#pragma once
#include <cerrno>
#include <cstring>
#include <expected>
#include <string>
#include <utility>

#include <fmt/format.h>

namespace cairn {

enum class Errc {
  failed,            // generic failure
  invalid_argument,  // bad user input (Hyper-V 32773)
  invalid_state,     // operation not allowed in the current state (32775)
  not_found,
  access_denied,     // 32769
  out_of_memory,     // 32778
  no_space,
  corrupt,           // a file failed a checksum, bound or format check
  unsupported,       // the host cannot do this (e.g. KVM without hardware virtualization)
  io,                // an OS call failed
  busy,              // another command holds the resource
  timeout,
};

struct Error {
  Errc code = Errc::failed;
  std::string message;

  // Adds outer context: "opening disk a.img: reading header: short read".
  Error context(std::string_view what) && {
    message = fmt::format("{}: {}", what, message);
    return std::move(*this);
  }
};

template <class T = void>
using Result = std::expected<T, Error>;

template <class... Args>
std::unexpected<Error> fail(Errc code, fmt::format_string<Args...> f, Args&&... args) {
  return std::unexpected(Error{code, fmt::format(f, std::forward<Args>(args)...)});
}

// For failed OS calls: the message ends with strerror(errno); ENOSPC/ENOMEM/EACCES keep their kind.
inline Errc errc_from_errno(int e) {
  switch (e) {
    case ENOSPC: case EDQUOT: return Errc::no_space;
    case ENOMEM: return Errc::out_of_memory;
    case EACCES: case EPERM: return Errc::access_denied;
    case ENOENT: return Errc::not_found;
    case EBUSY: case EAGAIN: return Errc::busy;
    default: return Errc::io;
  }
}

template <class... Args>
std::unexpected<Error> fail_errno(fmt::format_string<Args...> f, Args&&... args) {
  int e = errno;
  return std::unexpected(Error{errc_from_errno(e),
                               fmt::format("{}: {}", fmt::format(f, std::forward<Args>(args)...),
                                           std::strerror(e))});
}

// Propagates with context: CAIRN_TRY(x, expr, "what") -> x = *expr or return error.
#define CAIRN_TRY_CTX(var, expr, what)                                        \
  auto var##_res_ = (expr);                                                   \
  if (!var##_res_) return std::unexpected(std::move(var##_res_.error()).context(what)); \
  auto var = std::move(*var##_res_)

}  // namespace cairn
