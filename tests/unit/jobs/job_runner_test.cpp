// Jobs end to end: fork() works in the test process, so the job process runs
// the lambdas below while the test watches its record like `cairn job wait`.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <stdexcept>
#include <thread>

#include <catch2/catch.hpp>

#include "tests/unit/jobs/temp_home.hpp"
#include "vmm/jobs/run_as_job.hpp"
#include "vmm/vmstore/uuid.hpp"

using namespace cairn;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {
// Polls the record (as load() sees it) until `done` says so; fails the test after 10 s.
template <class Pred>
JobRecord wait_for(const JobStore& store, const std::string& id, Pred done) {
  auto deadline = std::chrono::steady_clock::now() + 10s;
  for (;;) {
    auto r = store.load(id);
    REQUIRE(r);
    if (done(*r)) return *r;
    REQUIRE(std::chrono::steady_clock::now() < deadline);
    std::this_thread::sleep_for(10ms);
  }
}
JobRecord wait_ended(const JobStore& store, const std::string& id) {
  return wait_for(store, id, [](const JobRecord& r) { return r.state != JobState::running; });
}

// The job process is our child: reap it and return its exit status (-signal when killed).
int reap(pid_t pid) {
  int st = 0;
  REQUIRE(::waitpid(pid, &st, 0) == pid);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
}

std::string read_all(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Runs `fn` with fd 1 going to the file `path`; returns what was printed.
std::string capture_stdout(const std::string& path, const std::function<void()>& fn) {
  std::fflush(stdout);
  int saved = ::dup(STDOUT_FILENO);
  int out = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  REQUIRE(saved >= 0);
  REQUIRE(out >= 0);
  ::dup2(out, STDOUT_FILENO);
  ::close(out);
  fn();
  std::fflush(stdout);
  ::dup2(saved, STDOUT_FILENO);
  ::close(saved);
  return read_all(path);
}

struct Fixture {
  test::TempHome home;
  JobStore store = JobStore::open_default().value();
};
}  // namespace

TEST_CASE("jobs: a job runs in the background and completes with its result", "[jobs]") {
  Fixture f;
  auto job = start_job(f.store, "Export VM 'web'", "web", [](Progress& p, json& result) {
    p.stage("copying disk vda");
    for (int i = 1; i <= 20; ++i) {
      std::this_thread::sleep_for(15ms);
      p.update(static_cast<uint64_t>(i), 20);
    }
    fmt::print("to stdout\n");
    fmt::print(stderr, "to the log\n");
    result["bytes"] = 12345;
    return 0;
  });
  REQUIRE(job);
  CHECK(is_uuid(job->id));

  // The record exists, says running and names the job process, before the work ends.
  auto early = f.store.load(job->id);
  REQUIRE(early);
  CHECK(early->state == JobState::running);
  CHECK(early->pid == job->pid);
  CHECK(early->operation == "Export VM 'web'");
  CHECK(early->vm == "web");

  auto mid = wait_for(f.store, job->id, [](const JobRecord& r) {
    return r.state != JobState::running || (r.percent > 0 && r.percent < 100);
  });
  CHECK(mid.stage == "copying disk vda");

  JobRecord done = wait_ended(f.store, job->id);
  CHECK(reap(job->pid) == 0);
  CHECK(done.state == JobState::completed);
  CHECK(done.percent == 100);
  CHECK(done.exit_code == 0);
  CHECK(done.error.empty());
  CHECK(done.result == json{{"bytes", 12345}});
  CHECK(done.ended >= done.started);

  std::string log = read_all(f.store.paths(job->id).log);
  CHECK(log == "to the log\n");  // stdout went to /dev/null
}

TEST_CASE("jobs: a failing job records its exit code and last error line", "[jobs]") {
  Fixture f;
  auto job = start_job(f.store, "Apply checkpoint 'x'", "", [](Progress& p, json& result) {
    p.stage("restoring");
    p.update(1, 4);
    result["partial"] = true;
    fmt::print(stderr, "cairn: warning: something odd\n");
    fmt::print(stderr, "cairn: error: merging disk vda: no space left on device\n");
    return 6;
  });
  REQUIRE(job);
  JobRecord r = wait_ended(f.store, job->id);
  CHECK(reap(job->pid) == 6);
  CHECK(r.state == JobState::failed);
  CHECK(r.exit_code == 6);
  CHECK(r.error == "merging disk vda: no space left on device");
  CHECK(r.stage == "restoring");
  CHECK(r.result["partial"] == true);
}

TEST_CASE("jobs: a failure without a message, and an exception", "[jobs]") {
  Fixture f;
  auto silent = start_job(f.store, "Silent", "", [](Progress&, json&) { return 5; });
  auto thrower = start_job(f.store, "Thrower", "", [](Progress&, json&) -> int {
    throw std::runtime_error("bad things");
  });
  REQUIRE(silent);
  REQUIRE(thrower);
  JobRecord s = wait_ended(f.store, silent->id);
  JobRecord t = wait_ended(f.store, thrower->id);
  CHECK(reap(silent->pid) == 5);
  CHECK(reap(thrower->pid) == 1);
  CHECK(s.exit_code == 5);
  CHECK_THAT(s.error, Catch::Contains("exit code 5") && Catch::Contains("no message"));
  CHECK(t.state == JobState::failed);
  CHECK(t.exit_code == 1);
  CHECK(t.error == "bad things");
}

TEST_CASE("jobs: a job process killed mid-work shows as failed", "[jobs]") {
  Fixture f;
  auto job = start_job(f.store, "Endless", "vm1", [](Progress& p, json&) {
    p.stage("spinning");
    for (;;) std::this_thread::sleep_for(10ms);
    return 0;
  });
  REQUIRE(job);
  wait_for(f.store, job->id, [](const JobRecord& r) { return r.stage == "spinning"; });
  CHECK(f.store.load(job->id)->state == JobState::running);

  REQUIRE(::kill(job->pid, SIGKILL) == 0);
  CHECK(reap(job->pid) == -SIGKILL);
  auto r = f.store.load(job->id);
  REQUIRE(r);
  CHECK(r->state == JobState::failed);
  CHECK(r->error == kJobVanishedError);
  CHECK(r->exit_code == 1);
  CHECK(r->stage == "spinning");
  CHECK(r->ended.empty());
}

TEST_CASE("jobs: the job process has its own session and no inherited fds", "[jobs]") {
  Fixture f;
  int leak[2];
  REQUIRE(::pipe(leak) == 0);  // without O_CLOEXEC: would stay open in a careless child
  auto job = start_job(f.store, "Inspect", "", [&](Progress&, json& result) {
    result["sid_is_pid"] = ::getsid(0) == ::getpid();
    result["leak_open"] = ::fcntl(leak[1], F_GETFD) != -1;
    return 0;
  });
  ::close(leak[1]);
  REQUIRE(job);
  JobRecord r = wait_ended(f.store, job->id);
  reap(job->pid);
  ::close(leak[0]);
  CHECK(r.result["sid_is_pid"] == true);
  CHECK(r.result["leak_open"] == false);
}

TEST_CASE("jobs: run_as_job prints the job id and returns at once", "[jobs]") {
  Fixture f;
  // The work ends only once the test creates `go`: returning before that is "at once".
  std::string go = f.home.path() + "/go";
  auto work = [go](Progress& p, json&) {
    p.stage("waiting");
    while (::access(go.c_str(), F_OK) != 0) std::this_thread::sleep_for(5ms);
    return 0;
  };
  int rc_json = -1, rc_text = -1;
  std::string as_json = capture_stdout(f.home.path() + "/out1", [&] { rc_json = run_as_job("Slow", "web", work, true); });
  std::string as_text = capture_stdout(f.home.path() + "/out2", [&] { rc_text = run_as_job("Slow", "", work, false); });
  CHECK(rc_json == 0);
  CHECK(rc_text == 0);

  json printed = json::parse(as_json);
  CHECK(printed["state"] == "running");
  std::string id = printed["job_id"];
  REQUIRE(is_uuid(id));
  CHECK(f.store.load(id)->state == JobState::running);
  REQUIRE(as_text.starts_with("Job "));
  std::string id2 = as_text.substr(4, 36);
  REQUIRE(is_uuid(id2));
  CHECK_THAT(as_text, Catch::Contains(id2 + " started: Slow\n") && Catch::Contains("cairn job wait " + id2));

  std::ofstream(go) << "";
  for (auto& i : {id, id2}) {
    JobRecord r = wait_ended(f.store, i);
    reap(r.pid);
    CHECK(r.state == JobState::completed);
    CHECK(r.vm == (i == id ? "web" : ""));
  }
}

TEST_CASE("jobs: run_as_job reports why a job cannot start", "[jobs]") {
  test::TempHome home;
  // A file where the jobs folder should be.
  std::ofstream(home.path() + "/jobs") << "in the way";
  int rc = run_as_job("Nothing", "", [](Progress&, json&) { return 0; }, false);
  CHECK(rc == 1);  // an OS error: kExitFailed
}
