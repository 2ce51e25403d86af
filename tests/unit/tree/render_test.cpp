#include <catch2/catch.hpp>

#include "snapshot/tree/checkpoint_tree.hpp"
#include "tests/unit/tree/tree_test_util.hpp"

using namespace cairn;
using namespace cairn::tree;
using namespace cairn::tree::test;

namespace {

Tree branched() {
  Tree t;
  REQUIRE(t.add(make_checkpoint(id_of(0x3f1c2a91), "web1 (11/28/2026 - 01:02:03 AM)")));
  REQUIRE(t.add(make_checkpoint(id_of(0x3f1c2a92), "before-upgrade", id_of(0x3f1c2a91))));
  Checkpoint patched = make_checkpoint(id_of(0x3f1c2a93), "patched", id_of(0x3f1c2a92));
  patched.type = CheckpointType::production;
  REQUIRE(t.add(patched));
  REQUIRE(t.add(make_checkpoint(id_of(0x3f1c2a94), "test", id_of(0x3f1c2a91))));
  REQUIRE(t.add(make_checkpoint(id_of(0x3f1c2a95), "test", id_of(0x3f1c2a92))));
  REQUIRE(t.add(make_checkpoint(id_of(0x3f1c2a96), "other-branch", id_of(0x3f1c2a91))));
  REQUIRE(t.add(make_checkpoint(id_of(0x3f1c2a97), "imported")));
  return t;
}

}  // namespace

TEST_CASE("render_tree draws a branched tree with Now under the current checkpoint") {
  Tree t = branched();
  t.current = id_of(0x3f1c2a93);
  CHECK(render_tree(t) ==
        "web1 (11/28/2026 - 01:02:03 AM)\n"
        "├─ before-upgrade\n"
        "│  ├─ patched (production)\n"
        "│  │  └─ Now\n"
        "│  └─ test [3f1c2a95]\n"
        "├─ test [3f1c2a94]\n"
        "└─ other-branch\n"
        "imported\n");
}

TEST_CASE("render_tree puts Now after the children of a current checkpoint") {
  Tree t = branched();
  t.current = id_of(0x3f1c2a92);
  CHECK(render_tree(t) ==
        "web1 (11/28/2026 - 01:02:03 AM)\n"
        "├─ before-upgrade\n"
        "│  ├─ patched (production)\n"
        "│  ├─ test [3f1c2a95]\n"
        "│  └─ Now\n"
        "├─ test [3f1c2a94]\n"
        "└─ other-branch\n"
        "imported\n");
}

TEST_CASE("render_tree puts Now at the top level when it has no parent") {
  Tree t = branched();
  t.current = "";
  CHECK(render_tree(t) ==
        "web1 (11/28/2026 - 01:02:03 AM)\n"
        "├─ before-upgrade\n"
        "│  ├─ patched (production)\n"
        "│  └─ test [3f1c2a95]\n"
        "├─ test [3f1c2a94]\n"
        "└─ other-branch\n"
        "imported\n"
        "Now\n");
  CHECK(render_tree(Tree{}) == "Now\n");
}

TEST_CASE("render_tree keeps one line per checkpoint whatever the name holds") {
  Tree t;
  REQUIRE(t.add(make_checkpoint(id_of(1), "two\nlines")));
  CHECK(render_tree(t) == "two?lines\n└─ Now\n");
}
