#include <sys/stat.h>

#include <fstream>
#include <functional>

#include <catch2/catch.hpp>

#include "tests/unit/vmm/temp_dir.hpp"
#include "vmm/vmstore/atomic_file.hpp"
#include "vmm/vmstore/vm_config.hpp"

using namespace cairn;
using nlohmann::json;

namespace {
VmRecord sample() {
  VmRecord r;
  r.id = "3f1c2a9e-1234-4abc-8def-0123456789ab";
  r.name = "web1";
  r.created = "2024-05-01T12:00:00Z";
  r.machine.kernel = "/images/vmlinux";
  r.machine.initrd = "/images/initramfs.cpio.gz";
  r.machine.cmdline = "quiet";
  r.machine.memory = 512ULL << 20;
  r.machine.cpus = 2;
  r.machine.disks = {{"/d/a.img", false}, {"/d/b.img", true}};
  r.machine.vsock = VsockConfigArg{7, "/run/vm.vsock"};
  r.machine.console = "file:/log/console.log";
  r.machine.guest_command = {"echo hi", "exit 3"};
  return r;
}
}  // namespace

TEST_CASE("VM config: JSON round trip keeps every field", "[vmctl]") {
  VmRecord r = sample();
  r.extra["checkpoints"] = {{"type", "production"}};
  auto back = vm_record_from_json(vm_record_to_json(r));
  REQUIRE(back);
  CHECK(back->id == r.id);
  CHECK(back->name == r.name);
  CHECK(back->created == r.created);
  const MachineConfig& m = back->machine;
  CHECK(m.kernel == r.machine.kernel);
  CHECK(m.initrd == r.machine.initrd);
  CHECK(m.cmdline == "quiet");
  CHECK(m.memory == (512ULL << 20));
  CHECK(m.cpus == 2);
  REQUIRE(m.disks.size() == 2);
  CHECK(m.disks[1].path == "/d/b.img");
  CHECK(m.disks[1].read_only);
  CHECK_FALSE(m.disks[0].read_only);
  REQUIRE(m.vsock);
  CHECK(m.vsock->cid == 7);
  CHECK(m.vsock->uds_path == "/run/vm.vsock");
  CHECK(m.console == "file:/log/console.log");
  CHECK(m.guest_command == std::vector<std::string>{"echo hi", "exit 3"});
  // Keys of other areas survive a rewrite.
  CHECK(back->extra["checkpoints"]["type"] == "production");
  CHECK(vm_record_to_json(*back) == vm_record_to_json(r));
}

TEST_CASE("VM config: no vsock is null", "[vmctl]") {
  VmRecord r = sample();
  r.machine.vsock.reset();
  json j = vm_record_to_json(r);
  CHECK(j["machine"]["vsock"].is_null());
  auto back = vm_record_from_json(j);
  REQUIRE(back);
  CHECK_FALSE(back->machine.vsock);
}

TEST_CASE("VM config: damaged content is 'corrupt' and names the field", "[vmctl]") {
  json good = vm_record_to_json(sample());
  struct Case { const char* what; std::function<void(json&)> damage; const char* says; };
  std::vector<Case> cases = {
      {"format", [](json& j) { j["format"] = 99; }, "format 99"},
      {"id", [](json& j) { j["id"] = "xyz"; }, "UUID"},
      {"name", [](json& j) { j["name"] = "../etc"; }, "character"},
      {"memory type", [](json& j) { j["machine"]["memory"] = "256M"; }, "\"memory\" has the wrong type"},
      {"negative cpus", [](json& j) { j["machine"]["cpus"] = -1; }, "\"cpus\" has the wrong type"},
      {"missing kernel", [](json& j) { j["machine"].erase("kernel"); }, "\"kernel\" is missing"},
      {"disks", [](json& j) { j["machine"]["disks"] = 3; }, "disks"},
      {"disk entry", [](json& j) { j["machine"]["disks"][0]["read_only"] = "no"; }, "read_only"},
      {"command", [](json& j) { j["machine"]["guest_command"] = {1, 2}; }, "guest_command"},
      {"machine", [](json& j) { j.erase("machine"); }, "machine"},
  };
  for (auto& c : cases) {
    INFO(c.what);
    json j = good;
    c.damage(j);
    auto r = vm_record_from_json(j);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::corrupt);
    CHECK_THAT(r.error().message, Catch::Contains(c.says));
  }
  CHECK_FALSE(vm_record_from_json(json::array()));
}

TEST_CASE("VM config: save and load through a file, bad files are errors", "[vmctl]") {
  test::TempDir dir;
  std::string path = dir / "config.json";
  REQUIRE(save_vm_record(path, sample()));
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  auto back = load_vm_record(path);
  REQUIRE(back);
  CHECK(back->machine.disks.size() == 2);

  { std::ofstream(path) << "{ not json"; }
  auto bad = load_vm_record(path);
  REQUIRE_FALSE(bad);
  CHECK(bad.error().code == Errc::corrupt);
  CHECK_THAT(bad.error().message, Catch::Contains(path));

  auto missing = load_vm_record(dir / "nope.json");
  REQUIRE_FALSE(missing);
  CHECK(missing.error().code == Errc::not_found);
}

TEST_CASE("atomic write: replaces content, leaves no temporary file", "[vmctl]") {
  test::TempDir dir;
  std::string path = dir / "f.txt";
  REQUIRE(write_file_atomic(path, "first"));
  REQUIRE(write_file_atomic(path, "second, longer"));
  auto text = read_small_file(path, 1024);
  REQUIRE(text);
  CHECK(*text == "second, longer");
  size_t files = 0;
  for (auto& e : std::filesystem::directory_iterator(dir.path())) {
    (void)e;
    ++files;
  }
  CHECK(files == 1);
  // A folder that does not exist fails cleanly.
  auto r = write_file_atomic(dir / "no/such/f.txt", "x");
  REQUIRE_FALSE(r);
  CHECK(r.error().code == Errc::not_found);
  // Size bound on reading.
  auto big = read_small_file(path, 4);
  REQUIRE_FALSE(big);
  CHECK(big.error().code == Errc::corrupt);
}

TEST_CASE("utc_timestamp_now: ISO 8601 UTC", "[vmctl]") {
  std::string t = utc_timestamp_now();
  REQUIRE(t.size() == 20);
  CHECK(t[4] == '-');
  CHECK(t[10] == 'T');
  CHECK(t.back() == 'Z');
}
