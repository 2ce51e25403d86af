#include <sys/stat.h>

#include <fstream>

#include <catch2/catch.hpp>

#include "snapshot/tree/checkpoint_tree.hpp"
#include "tests/unit/tree/tree_test_util.hpp"

using namespace cairn;
using namespace cairn::tree;
using namespace cairn::tree::test;
using nlohmann::json;

namespace {

// root -> mid -> leaf, and root -> other (production, with disks and stats).
Tree sample_tree() {
  Tree t;
  REQUIRE(t.add(make_checkpoint(id_of(1), "root")));
  REQUIRE(t.add(make_checkpoint(id_of(2), "mid", id_of(1))));
  REQUIRE(t.add(make_checkpoint(id_of(3), "leaf", id_of(2))));
  Checkpoint other = make_checkpoint(id_of(4), "other", id_of(1));
  other.type = CheckpointType::production;
  other.description = "before the upgrade\nsecond line";
  other.disks = {"/var/lib/cairn/web1/disks/vda.1.layer", "/var/lib/cairn/web1/disks/vdb.1.layer"};
  other.enabled = false;
  other.has_memory = true;
  other.vm_state = "running";
  other.note = "guest agent did not answer";
  other.stats = {{"memory_bytes", 1234}, {"seconds", 1.5}};
  other.modified_time = "2026-11-29T10:00:00Z";
  REQUIRE(t.add(other));
  t.current = id_of(3);
  return t;
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
}

// Writes `text` as the tree file and checks that loading refuses it.
void expect_corrupt_text(const std::string& text, const std::string& fragment) {
  TempDir dir;
  std::string path = dir / "checkpoints.json";
  write_text(path, text);
  auto r = load_tree(path);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == Errc::corrupt);
  CHECK_THAT(r.error().message, Catch::Contains(path));
  CHECK_THAT(r.error().message, Catch::Contains(fragment));
}

void expect_corrupt(const json& j, const std::string& fragment) { expect_corrupt_text(j.dump(), fragment); }

}  // namespace

TEST_CASE("a saved tree loads back equal, with mode 0600") {
  TempDir dir;
  std::string path = dir / "checkpoints.json";
  Tree t = sample_tree();
  REQUIRE(save_tree(path, t));

  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);

  auto back = load_tree(path);
  REQUIRE(back);
  CHECK(back->current == t.current);
  REQUIRE(back->checkpoints.size() == t.checkpoints.size());
  for (size_t i = 0; i < t.checkpoints.size(); ++i) {
    const Checkpoint& a = t.checkpoints[i];
    const Checkpoint& b = back->checkpoints[i];
    CHECK(a.id == b.id);
    CHECK(a.name == b.name);
    CHECK(a.description == b.description);
    CHECK(a.type == b.type);
    CHECK(a.added_time == b.added_time);
    CHECK(a.modified_time == b.modified_time);
    CHECK(a.parent_id == b.parent_id);
    CHECK(a.disks == b.disks);
    CHECK(a.vm_id == b.vm_id);
    CHECK(a.vm_name == b.vm_name);
    CHECK(a.enabled == b.enabled);
    CHECK(a.most_recent_task == b.most_recent_task);
    CHECK(a.has_memory == b.has_memory);
    CHECK(a.vm_state == b.vm_state);
    CHECK(a.note == b.note);
    CHECK(a.stats == b.stats);
  }
  CHECK(tree_to_json(*back) == tree_to_json(t));
}

TEST_CASE("a missing tree file is an empty tree") {
  TempDir dir;
  auto t = load_tree(dir / "checkpoints.json");
  REQUIRE(t);
  CHECK(t->checkpoints.empty());
  CHECK(t->current.empty());
}

TEST_CASE("unknown keys inside a checkpoint are ignored") {
  json j = tree_to_json(sample_tree());
  j["checkpoints"][0]["future_field"] = {1, 2, 3};
  auto t = tree_from_json(j);
  REQUIRE(t);
  CHECK(t->checkpoints[0].name == "root");
}

TEST_CASE("a wrong format is refused") {
  json j = tree_to_json(sample_tree());
  j["format"] = 2;
  expect_corrupt(j, "format 2 is not supported");
  j["format"] = "1";
  expect_corrupt(j, "\"format\" is not an integer");
  j["format"] = 1.0;
  expect_corrupt(j, "\"format\" is not an integer");
  j.erase("format");
  expect_corrupt(j, "\"format\" is missing");
}

TEST_CASE("fields of the wrong type are refused") {
  const json good = tree_to_json(sample_tree());
  struct Case {
    std::string key;
    json value;
    std::string fragment;
  };
  std::vector<Case> cases = {
      {"checkpoint_id", 7, "\"checkpoint_id\" is not a string"},
      {"checkpoint_id", "not-a-uuid", "is not a UUID"},
      {"checkpoint_id", "00000001-0000-4000-8000-00000000000A", "is not a UUID"},
      {"name", 5, "\"name\" is not a string"},
      {"description", nullptr, "\"description\" is not a string"},
      {"type", "snapshot", "neither standard nor production"},
      {"type", true, "\"type\" is not a string"},
      {"added_time", "yesterday", "\"added_time\" 'yesterday' is not a UTC time"},
      {"modified_time", 1700000000, "\"modified_time\" is not a string"},
      {"parent_checkpoint_id", 3, "\"parent_checkpoint_id\" is neither null nor a UUID"},
      {"parent_checkpoint_id", "", "\"parent_checkpoint_id\" is neither null nor a UUID"},
      {"virtual_disk_drives", "/a.img", "\"virtual_disk_drives\" is not an array"},
      {"virtual_disk_drives", json::array({"/a.img", 2}), "holds a non-string"},
      {"vm_id", json::object(), "\"vm_id\" is not a string"},
      {"vm_name", json::array(), "\"vm_name\" is not a string"},
      {"enabled", "true", "\"enabled\" is not true or false"},
      {"most_recent_task", 0, "\"most_recent_task\" is not a string"},
      {"has_memory", 1, "\"has_memory\" is not true or false"},
      {"vm_state", false, "\"vm_state\" is not a string"},
      {"note", 1.5, "\"note\" is not a string"},
      {"stats", json::array(), "\"stats\" is not an object"},
  };
  for (auto& c : cases) {
    SECTION(c.key + " = " + c.value.dump()) {
      json j = good;
      j["checkpoints"][1][c.key] = c.value;
      expect_corrupt(j, c.fragment);
    }
  }
  SECTION("a missing field") {
    json j = good;
    j["checkpoints"][2].erase("vm_state");
    expect_corrupt(j, "checkpoint 2 (" + id_of(3) + "): \"vm_state\" is missing");
  }
  SECTION("top-level shapes") {
    expect_corrupt(json::array(), "not a JSON object");
    json j = good;
    j["checkpoints"] = json::object();
    expect_corrupt(j, "\"checkpoints\" is not an array");
    j = good;
    j["checkpoints"][0] = "root";
    expect_corrupt(j, "checkpoint 0 is not an object");
    j = good;
    j["current"] = nullptr;
    expect_corrupt(j, "\"current\" is not a string");
  }
}

TEST_CASE("inconsistent links are refused") {
  const json good = tree_to_json(sample_tree());
  SECTION("unknown parent") {
    json j = good;
    j["checkpoints"][2]["parent_checkpoint_id"] = id_of(99);
    expect_corrupt(j, "parent " + id_of(99) + " does not exist");
  }
  SECTION("cycle of two") {
    json j = good;
    j["checkpoints"][0]["parent_checkpoint_id"] = id_of(2);  // root's parent is its child
    expect_corrupt(j, "cycle");
  }
  SECTION("a checkpoint that is its own parent") {
    json j = good;
    j["checkpoints"][3]["parent_checkpoint_id"] = id_of(4);
    expect_corrupt(j, "cycle");
  }
  SECTION("duplicate ids") {
    json j = good;
    j["checkpoints"][3]["checkpoint_id"] = id_of(2);
    expect_corrupt(j, "checkpoint ID " + id_of(2) + " appears twice");
  }
  SECTION("current names a missing checkpoint") {
    json j = good;
    j["current"] = id_of(42);
    expect_corrupt(j, "\"current\" names checkpoint " + id_of(42) + ", which does not exist");
  }
  SECTION("current is not a UUID") {
    json j = good;
    j["current"] = "latest";
    expect_corrupt(j, "\"current\" 'latest' is neither \"\" nor a UUID");
  }
}

TEST_CASE("damaged files are refused") {
  std::string text = tree_to_json(sample_tree()).dump(2);
  SECTION("truncated") { expect_corrupt_text(text.substr(0, text.size() / 2), "is not valid JSON"); }
  SECTION("not JSON") { expect_corrupt_text("checkpoints: none\n", "is not valid JSON"); }
  SECTION("empty") { expect_corrupt_text("", "is not valid JSON"); }
}

TEST_CASE("save_tree refuses a tree that would not load back") {
  TempDir dir;
  std::string path = dir / "checkpoints.json";
  Tree t = sample_tree();
  REQUIRE(save_tree(path, t));
  Tree bad = t;
  bad.checkpoints[1].parent_id = id_of(77);
  auto r = save_tree(path, bad);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == Errc::invalid_argument);
  auto kept = load_tree(path);  // the good file is still there
  REQUIRE(kept);
  CHECK(kept->checkpoints[1].parent_id == id_of(1));
}

TEST_CASE("to_published_json has exactly the published fields") {
  Tree t = sample_tree();
  json root = to_published_json(t.checkpoints[0]);
  std::vector<std::string> keys;
  for (auto& [k, v] : root.items()) keys.push_back(k);
  std::sort(keys.begin(), keys.end());
  CHECK(keys == std::vector<std::string>{"added_time", "checkpoint_id", "description", "enabled",
                                         "modified_time", "most_recent_task", "name", "parent_checkpoint_id",
                                         "type", "virtual_disk_drives", "vm_id", "vm_name"});
  CHECK(root["parent_checkpoint_id"].is_null());
  CHECK(root["type"] == "standard");

  json other = to_published_json(t.checkpoints[3]);
  CHECK(other.size() == 12);
  CHECK(other["parent_checkpoint_id"] == id_of(1));
  CHECK(other["type"] == "production");
  CHECK(other["enabled"] == false);
  CHECK(other["virtual_disk_drives"].size() == 2);
  CHECK_FALSE(other.contains("has_memory"));
  CHECK_FALSE(other.contains("stats"));
}
