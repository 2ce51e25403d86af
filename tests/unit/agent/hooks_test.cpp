#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "guest-agent/agent/hooks.hpp"

using namespace cairn;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    char tmpl[] = "/tmp/cairn-hooks-XXXXXX";
    REQUIRE(::mkdtemp(tmpl));
    path = tmpl;
  }
  ~TempDir() { fs::remove_all(path); }
};

void script(const fs::path& p, const std::string& body, bool exec = true) {
  std::ofstream(p) << "#!/bin/sh\n" << body << "\n";
  ::chmod(p.c_str(), exec ? 0755 : 0644);
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

TEST_CASE("hooks: executables run in name order with the action; leftovers skipped") {
  TempDir t;
  fs::path log = t.path / "log";
  fs::create_directory(t.path / "d");
  script(t.path / "d/20-b", "echo b $1 >> " + log.string());
  script(t.path / "d/10-a", "echo a $1 >> " + log.string());
  script(t.path / "d/30-c", "echo c $1 >> " + log.string(), /*exec=*/false);
  script(t.path / "d/40-d.dpkg-old", "echo d $1 >> " + log.string());
  script(t.path / "d/50-e~", "echo e $1 >> " + log.string());
  HookDirRunner h((t.path / "d").string(), 5s);
  CHECK(h.list().size() == 2);
  REQUIRE(h.run("freeze"));
  REQUIRE(h.run("thaw"));
  CHECK(slurp(log) == "a freeze\nb freeze\na thaw\nb thaw\n");
}

TEST_CASE("hooks: a failing freeze hook stops the run and names the hook") {
  TempDir t;
  fs::path log = t.path / "log";
  script(t.path / "1", "exit 3");
  script(t.path / "2", "echo ran >> " + log.string());
  HookDirRunner h(t.path.string(), 5s);
  auto r = h.run("freeze");
  REQUIRE_FALSE(r);
  CHECK(r.error().message.find("status 3") != std::string::npos);
  CHECK_FALSE(fs::exists(log));
  // Thaw runs every hook even after a failure.
  REQUIRE_FALSE(h.run("thaw"));
  CHECK(slurp(log) == "ran\n");
}

TEST_CASE("hooks: a hook past the timeout is killed") {
  TempDir t;
  script(t.path / "slow", "exec sleep 30");
  HookDirRunner h(t.path.string(), 200ms);
  auto start = std::chrono::steady_clock::now();
  auto r = h.run("freeze");
  REQUIRE_FALSE(r);
  CHECK(r.error().code == Errc::timeout);
  CHECK(std::chrono::steady_clock::now() - start < 5s);
}

TEST_CASE("hooks: a missing folder means no hooks") {
  HookDirRunner h("/nonexistent/cairn-hooks", 1s);
  CHECK(h.list().empty());
  CHECK(h.run("freeze"));
}
