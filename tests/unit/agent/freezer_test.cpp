#include <catch2/catch.hpp>

#include "guest-agent/agent/freezer.hpp"
#include "tests/unit/agent/fake_fs.hpp"

using namespace cairn;
using cairn::test::FakeFs;
using cairn::test::FakeHooks;

TEST_CASE("mountinfo: fields, escapes, optional fields, bad lines") {
  std::string text =
      "22 1 0:21 / /proc rw,nosuid - proc proc rw\n"
      "30 1 254:0 / /mnt rw,relatime shared:1 - ext4 /dev/vda rw\n"
      "31 30 254:16 / /mnt/with\\040space rw master:2 shared:3 - ext4 /dev/vdb rw\n"
      "garbage line\n"
      "32 1 0:45 / /data rw - btrfs /dev/vdc rw\n";
  auto m = parse_mountinfo(text);
  REQUIRE(m.size() == 4);
  CHECK(m[0].dir == "/proc");
  CHECK(m[0].major == 0);
  CHECK_FALSE(freeze_candidate(m[0]));
  CHECK(m[1].dir == "/mnt");
  CHECK(m[1].type == "ext4");
  CHECK(m[1].source == "/dev/vda");
  CHECK(m[1].major == 254);
  CHECK(freeze_candidate(m[1]));
  CHECK(m[2].dir == "/mnt/with space");
  CHECK(m[2].minor == 16);
  CHECK(m[3].type == "btrfs");
  CHECK(freeze_candidate(m[3]));
}

TEST_CASE("freeze: hooks first, then reverse mount order; unfreezable ones not counted") {
  FakeFs fs;
  fs.table = {FakeFs::mount("/"), FakeFs::mount("/mnt"), FakeFs::mount("/mnt/a")};
  fs.unfreezable = {"/mnt"};
  FakeHooks hooks;
  FreezeController fc(fs, &hooks);
  auto n = fc.freeze();
  REQUIRE(n);
  CHECK(*n == 2);
  CHECK(fs.log == std::vector<std::string>{"freeze /mnt/a", "freeze /mnt", "freeze /"});
  CHECK(hooks.calls == std::vector<std::string>{"freeze"});

  auto t = fc.thaw(true);
  REQUIRE(t);
  CHECK(*t == 2);
  CHECK(fs.frozen.empty());
  CHECK(hooks.calls == std::vector<std::string>{"freeze", "thaw"});
}

TEST_CASE("freeze: a failure thaws everything already frozen and reports the error") {
  FakeFs fs;
  fs.table = {FakeFs::mount("/"), FakeFs::mount("/a"), FakeFs::mount("/b")};
  fs.fail_on = "/a";
  FakeHooks hooks;
  FreezeController fc(fs, &hooks);
  auto n = fc.freeze();
  REQUIRE_FALSE(n);
  CHECK(n.error().message.find("/a") != std::string::npos);
  CHECK(fs.frozen.empty());
  CHECK(fs.log == std::vector<std::string>{"freeze /b", "freeze /a", "thaw /b"});
  CHECK(hooks.calls == std::vector<std::string>{"freeze", "thaw"});
}

TEST_CASE("freeze: a failing freeze hook freezes nothing and lets the others resume") {
  FakeFs fs;
  fs.table = {FakeFs::mount("/")};
  FakeHooks hooks;
  hooks.fail_freeze = true;
  FreezeController fc(fs, &hooks);
  auto n = fc.freeze();
  REQUIRE_FALSE(n);
  CHECK(n.error().message.find("freeze hook") != std::string::npos);
  CHECK(fs.log.empty());
  CHECK(hooks.calls == std::vector<std::string>{"freeze", "thaw"});
}

TEST_CASE("freeze: nothing freezable gives 0 and runs the thaw hooks") {
  FakeFs fs;
  FakeHooks hooks;
  FreezeController fc(fs, &hooks);
  auto n = fc.freeze();
  REQUIRE(n);
  CHECK(*n == 0);
  CHECK(hooks.calls == std::vector<std::string>{"freeze", "thaw"});
}
