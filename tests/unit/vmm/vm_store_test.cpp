#include <sys/stat.h>

#include <catch2/catch.hpp>

#include "tests/unit/vmm/temp_dir.hpp"
#include "vmm/vmstore/vm_lock.hpp"
#include "vmm/vmstore/vm_store.hpp"

using namespace cairn;

namespace {
VmRecord record(const std::string& name) {
  VmRecord r;
  r.id = "3f1c2a9e-1234-4abc-8def-0123456789ab";
  r.name = name;
  r.created = "2024-05-01T12:00:00Z";
  r.machine.kernel = "/images/vmlinux";
  return r;
}
}  // namespace

TEST_CASE("VM store: create, load, list, remove", "[vmctl]") {
  test::TempDir home;
  VmStore store(home.path());
  REQUIRE(store.names().value().empty());  // no vms/ folder yet
  REQUIRE(store.create(record("b")));
  REQUIRE(store.create(record("a")));
  CHECK(store.names().value() == std::vector<std::string>{"a", "b"});

  struct stat st {};
  REQUIRE(::stat(store.paths("a").dir.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0700);

  auto again = store.create(record("a"));
  REQUIRE_FALSE(again);
  CHECK(again.error().code == Errc::invalid_state);
  CHECK_THAT(again.error().message, Catch::Contains("already exists"));

  auto loaded = store.load("a");
  REQUIRE(loaded);
  CHECK(loaded->machine.kernel == "/images/vmlinux");

  auto missing = store.load("zzz");
  REQUIRE_FALSE(missing);
  CHECK(missing.error().code == Errc::not_found);
  CHECK_THAT(missing.error().message, Catch::Contains("no VM named 'zzz'"));

  auto bad = store.load("../x");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().code == Errc::invalid_argument);

  REQUIRE(store.remove("a"));
  CHECK(store.names().value() == std::vector<std::string>{"b"});
  CHECK(::access(store.paths("a").dir.c_str(), F_OK) != 0);
  CHECK(store.remove("a").error().code == Errc::not_found);
}

TEST_CASE("VM store: a config naming another VM is corrupt", "[vmctl]") {
  test::TempDir home;
  VmStore store(home.path());
  REQUIRE(store.create(record("a")));
  REQUIRE(save_vm_record(store.paths("a").config, record("other")));
  auto r = store.load("a");
  REQUIRE_FALSE(r);
  CHECK(r.error().code == Errc::corrupt);
}

TEST_CASE("VM store: a running VM (lock held) cannot be removed", "[vmctl]") {
  test::TempDir home;
  VmStore store(home.path());
  REQUIRE(store.create(record("vm")));
  {
    auto lock = VmLock::try_acquire(store.paths("vm").lock);
    REQUIRE(lock);
    REQUIRE(lock->write_pid(4242));
    auto r = store.remove("vm");
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::invalid_state);
    CHECK_THAT(r.error().message, Catch::Contains("pid 4242"));
  }
  CHECK(store.remove("vm"));
}

TEST_CASE("VM store: CAIRN_HOME decides the state folder", "[vmctl]") {
  const char* old = std::getenv("CAIRN_HOME");
  std::string saved = old ? old : "";
  ::setenv("CAIRN_HOME", "/srv/cairn/../cairn-state", 1);
  auto h = default_cairn_home();
  REQUIRE(h);
  CHECK(*h == "/srv/cairn-state");
  ::setenv("CAIRN_HOME", "rel/home", 1);
  auto rel = default_cairn_home();
  REQUIRE(rel);
  CHECK(rel->front() == '/');
  if (old) ::setenv("CAIRN_HOME", saved.c_str(), 1);
  else ::unsetenv("CAIRN_HOME");
}
