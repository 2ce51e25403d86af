#include "guest-agent/agent/freezer.hpp"

#include <cstdio>

namespace cairn {

namespace {

// "\040" -> ' ': the kernel escapes space, tab, newline and backslash.
std::string decode_octal(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '3' && s[i + 2] >= '0' && s[i + 2] <= '7' &&
        s[i + 3] >= '0' && s[i + 3] <= '7') {
      out.push_back(static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0')));
      i += 3;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::vector<std::string_view> split_spaces(std::string_view line) {
  std::vector<std::string_view> f;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && line[i] == ' ') ++i;
    size_t start = i;
    while (i < line.size() && line[i] != ' ') ++i;
    if (i > start) f.push_back(line.substr(start, i - start));
  }
  return f;
}

}  // namespace

// mountinfo line: ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - TYPE SOURCE SUPEROPTS
std::vector<MountPoint> parse_mountinfo(std::string_view text) {
  std::vector<MountPoint> out;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    auto f = split_spaces(line);
    if (f.size() < 7) continue;
    size_t dash = 6;
    while (dash < f.size() && f[dash] != "-") ++dash;
    if (dash + 2 >= f.size()) continue;
    unsigned maj = 0, min = 0;
    std::string devno(f[2]);
    if (std::sscanf(devno.c_str(), "%u:%u", &maj, &min) != 2) continue;
    MountPoint m;
    m.dir = decode_octal(f[4]);
    m.type = std::string(f[dash + 1]);
    m.source = decode_octal(f[dash + 2]);
    m.major = maj;
    m.minor = min;
    out.push_back(std::move(m));
  }
  return out;
}

bool freeze_candidate(const MountPoint& m) { return m.major != 0 || m.type == "btrfs"; }

int FreezeController::thaw_each(const std::vector<MountPoint>& ms) {
  int n = 0;
  for (const auto& m : ms)
    if (fs_.thaw(m)) ++n;
  return n;
}

int FreezeController::thaw_all() {
  auto mounts = fs_.mounts();
  if (!mounts) return 0;
  return thaw_each(*mounts);
}

Result<int> FreezeController::freeze() {
  if (hooks_) {
    if (auto h = hooks_->run("freeze"); !h) {
      // Let the applications that already flushed resume.
      (void)hooks_->run("thaw");
      return std::unexpected(std::move(h.error()).context("freeze hook"));
    }
  }
  auto fail_and_thaw = [&](Error e) -> Result<int> {
    thaw_all();
    if (hooks_) (void)hooks_->run("thaw");
    return std::unexpected(std::move(e));
  };
  auto mounts = fs_.mounts();
  if (!mounts) return fail_and_thaw(std::move(mounts.error()).context("listing mounts"));
  int frozen = 0;
  for (auto it = mounts->rbegin(); it != mounts->rend(); ++it) {
    auto r = fs_.freeze(*it);
    if (!r) return fail_and_thaw(std::move(r.error()));
    if (*r) ++frozen;
  }
  // Nothing frozen: the guest stays thawed, so its applications resume too.
  if (frozen == 0 && hooks_) (void)hooks_->run("thaw");
  if (frozen > 0) {
    frozen_at_ = std::chrono::steady_clock::now();
    frozen_count_ = frozen;
  }
  return frozen;
}

Result<int> FreezeController::thaw(bool run_hooks) {
  auto mounts = fs_.mounts();
  if (!mounts) return std::unexpected(std::move(mounts.error()).context("listing mounts"));
  const auto t0 = std::chrono::steady_clock::now();
  int n = thaw_each(*mounts);
  if (n > 0 && frozen_at_) {
    const auto t1 = std::chrono::steady_clock::now();
    last_window_ = Window{t1 - *frozen_at_, t1 - t0, frozen_count_};
    frozen_at_.reset();
  }
  if (run_hooks && hooks_) {
    // A failing thaw hook does not undo the thaw; it is reported on stderr by the runner.
    (void)hooks_->run("thaw");
  }
  return n;
}

}  // namespace cairn
