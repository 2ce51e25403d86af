// Kills a writer process (tests/unit/disk/crash_writer.cpp) with SIGKILL at
// random points during writes, flushes, layer creation and both merges, and
// checks after each kill that every flushed write survived, nothing else
// changed, and every layer passes the checks of `cairn disk check`.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <sstream>

#include "snapshot/disk/inspect.hpp"
#include "snapshot/disk/merge.hpp"
#include "tests/unit/disk/crash_ops.hpp"
#include "tests/unit/disk/disk_test_util.hpp"

using namespace cairn;
using namespace cairn::disk;
using namespace cairn::disk::test;

namespace {

// Runs the writer, kills it after `delay_us`, returns what it reported.
std::vector<std::string> run_and_kill(const std::vector<std::string>& args, int delay_us) {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::dup2(fds[1], 1);
    ::close(fds[0]);
    ::close(fds[1]);
    std::vector<char*> argv{const_cast<char*>(CAIRN_DISK_CRASH_WRITER)};
    for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  ::usleep(useconds_t(delay_us));
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) out.append(buf, size_t(n));
  ::close(fds[0]);
  // Exited on its own: it must have succeeded.
  if (WIFEXITED(status)) REQUIRE(WEXITSTATUS(status) == 0);
  std::vector<std::string> lines;
  std::istringstream in(out);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  return lines;
}

// After a killed `write` run: ops up to the last flush must be there; ops
// after it may or may not be (byte by byte); nothing else may differ.
void verify_writes(const std::string& top, std::vector<uint8_t>& model, uint64_t seed,
                   const std::vector<std::string>& lines) {
  long k = -1, d = -1;
  for (auto& l : lines) {
    if (l.size() > 2 && l[0] == 'F') k = std::stol(l.substr(2));
    if (l.size() > 2 && l[0] == 'D') d = std::stol(l.substr(2));
  }
  CrashOps ops(seed);
  std::vector<CrashOp> list;
  for (long i = 0; i <= d + 1; ++i) list.push_back(ops.next());
  for (long i = 0; i <= k; ++i) {
    const auto& op = list[size_t(i)];
    for (uint64_t p = op.off; p < op.off + op.len; ++p) model[p] = op.zero ? 0 : ops.fill(uint64_t(i), p);
  }
  auto actual = read_all(top);
  size_t bad = 0, first_bad = 0;
  for (size_t p = 0; p < actual.size(); ++p) {
    if (actual[p] == model[p]) continue;
    bool ok = false;
    for (long i = k + 1; i <= d + 1 && !ok; ++i) {
      const auto& op = list[size_t(i)];
      if (p >= op.off && p < op.off + op.len) ok = actual[p] == (op.zero ? 0 : ops.fill(uint64_t(i), p));
    }
    if (!ok && bad++ == 0) first_bad = p;
  }
  INFO("flushed through op " << k << ", done through op " << d << ", first bad byte " << first_bad);
  REQUIRE(bad == 0);
  model = std::move(actual);
}

void check_every_layer(const std::string& top) {
  auto ci = inspect_chain(top);
  if (!ci) FAIL(ci.error().message);
  for (const auto& l : ci->layers) {
    auto notes = check_layer_file(l.path);
    if (!notes) FAIL(notes.error().message);
  }
}

}  // namespace

TEST_CASE("kill -9 at random points loses no flushed write and damages no layer") {
  TempDir dir;
  REQUIRE(create_base(dir / "l0", kCrashDiskSize, kCrashBlockShift));
  std::vector<uint8_t> model(kCrashDiskSize, 0);
  std::vector<std::string> stack{dir / "l0"};  // bottom .. top
  std::mt19937_64 rng(Catch::rngSeed() ? Catch::rngSeed() : 1234);
  std::string forced;  // a merge to resume after an interrupted one
  auto start = std::chrono::steady_clock::now();
  int iterations = 0, kills = 0, merges = 0, diffs = 0;
  while (iterations < 400 && std::chrono::steady_clock::now() - start < std::chrono::seconds(35)) {
    ++iterations;
    std::string top = stack.back();
    std::string mode = forced;
    if (mode.empty()) {
      unsigned r = unsigned(rng() % 100);
      if (stack.size() >= 2 && r < 12) mode = "mergedown";
      else if (stack.size() >= 2 && r < 24) mode = "mergeup";
      else if (stack.size() < 6 && r < 36) mode = "diff";
      else mode = "write";
    }
    // Structural steps sync several times: give them longer, so some finish.
    int delay = 300 + int(rng() % (mode == "write" ? 25000 : 150000));
    INFO("iteration " << iterations << " mode " << mode << " depth " << stack.size());
    if (mode == "write") {
      uint64_t seed = rng();
      auto lines = run_and_kill({"write", top, std::to_string(seed)}, delay);
      ++kills;
      verify_writes(top, model, seed, lines);
    } else if (mode == "diff") {
      std::string next = dir / ("l" + std::to_string(iterations));
      auto lines = run_and_kill({"diff", top, next}, delay);
      if (!lines.empty() && lines.back().rfind("T ", 0) == 0) {
        stack.push_back(next);
        ++diffs;
      }
      REQUIRE(first_diff(read_all(stack.back()), model) == -1);
    } else if (mode == "mergedown") {
      std::string parent = stack[stack.size() - 2];
      run_and_kill({"mergedown", parent, top}, delay);
      auto c = open_chain(top, false);
      REQUIRE(c);
      bool done = (*c)->depth() < 2 || (*c)->layers()[1]->path() != parent;
      c->reset();
      forced = done ? "" : "mergedown";
      if (done) {
        stack.erase(stack.end() - 2);
        ++merges;
      }
      REQUIRE(first_diff(read_all(top), model) == -1);
    } else {  // mergeup
      std::string parent = stack[stack.size() - 2];
      run_and_kill({"mergeup", top}, delay);
      auto c = open_chain(top, false);
      bool done = !c;  // once complete, the parent's new generation refuses the child
      if (done) CHECK(c.error().code == Errc::corrupt);
      c = {};
      forced = done ? "" : "mergeup";
      if (done) {
        stack.pop_back();
        ++merges;
      }
      REQUIRE(first_diff(read_all(stack.back()), model) == -1);
    }
    check_every_layer(stack.back());
    if (iterations % 40 == 0 && ::access(CAIRN_CLI, X_OK) == 0) {
      int rc = std::system((std::string(CAIRN_CLI) + " disk check " + stack.back() + " >/dev/null").c_str());
      REQUIRE(WEXITSTATUS(rc) == 0);
    }
  }
  INFO("iterations " << iterations << " merges " << merges << " diffs " << diffs);
  WARN("crash test: " << iterations << " iterations, " << kills << " killed writers, " << merges << " merges, " << diffs << " new layers");
  CHECK(kills > 20);
  CHECK(merges > 0);
  CHECK(diffs > 0);
}
