#include <catch2/catch.hpp>

#include "snapshot/tree/checkpoint_tree.hpp"
#include "tests/unit/tree/tree_test_util.hpp"

using namespace cairn;
using namespace cairn::tree;
using namespace cairn::tree::test;

namespace {

std::vector<std::string> ids(const std::vector<const Checkpoint*>& cs) {
  std::vector<std::string> out;
  for (auto* c : cs) out.push_back(c->id);
  return out;
}

std::vector<std::string> all_ids(const Tree& t) {
  std::vector<std::string> out;
  for (auto& c : t.checkpoints) out.push_back(c.id);
  return out;
}

// A(1) -> B(2) -> C(3) -> D(5)
//      \-> E(4)        B -> F(6)
Tree branched() {
  Tree t;
  REQUIRE(t.add(make_checkpoint(id_of(1), "A")));
  REQUIRE(t.add(make_checkpoint(id_of(2), "B", id_of(1))));
  REQUIRE(t.add(make_checkpoint(id_of(3), "C", id_of(2))));
  REQUIRE(t.add(make_checkpoint(id_of(4), "E", id_of(1))));
  REQUIRE(t.add(make_checkpoint(id_of(5), "D", id_of(3))));
  REQUIRE(t.add(make_checkpoint(id_of(6), "F", id_of(2))));
  return t;
}

}  // namespace

TEST_CASE("add checks IDs and parents and moves Now") {
  Tree t;
  REQUIRE(t.add(make_checkpoint(id_of(1), "A")));
  CHECK(t.current == id_of(1));
  REQUIRE(t.add(make_checkpoint(id_of(2), "B", id_of(1))));
  CHECK(t.current == id_of(2));

  auto dup = t.add(make_checkpoint(id_of(1), "again"));
  REQUIRE_FALSE(dup);
  CHECK(dup.error().code == Errc::invalid_argument);
  auto orphan = t.add(make_checkpoint(id_of(3), "C", id_of(9)));
  REQUIRE_FALSE(orphan);
  CHECK(orphan.error().code == Errc::not_found);
  auto bad_id = t.add(make_checkpoint("abc", "D"));
  REQUIRE_FALSE(bad_id);
  CHECK(bad_id.error().code == Errc::invalid_argument);
  CHECK(t.checkpoints.size() == 2);
  CHECK(t.current == id_of(2));
}

TEST_CASE("navigation follows parent links in creation order") {
  Tree t = branched();
  CHECK(ids(t.children(id_of(1))) == std::vector{id_of(2), id_of(4)});
  CHECK(ids(t.children(id_of(2))) == std::vector{id_of(3), id_of(6)});
  CHECK(t.children(id_of(5)).empty());
  CHECK(ids(t.descendants(id_of(1))) == std::vector{id_of(2), id_of(3), id_of(5), id_of(6), id_of(4)});
  CHECK(ids(t.descendants(id_of(2))) == std::vector{id_of(3), id_of(5), id_of(6)});
  CHECK(ids(t.path_to_root(id_of(5))) == std::vector{id_of(5), id_of(3), id_of(2), id_of(1)});
  CHECK(t.path_to_root(id_of(99)).empty());
  CHECK(t.find(id_of(4))->name == "E");
  CHECK(t.find("") == nullptr);
}

TEST_CASE("resolve by ID, ID prefix and name") {
  Tree t;
  REQUIRE(t.add(make_checkpoint(id_of(0x3f1c2a9e, 1), "before-upgrade")));
  REQUIRE(t.add(make_checkpoint(id_of(0x3f1c2a9e, 2), "twin")));
  Checkpoint twin2 = make_checkpoint(id_of(0x77aa0000, 3), "twin");
  twin2.added_time = "2026-12-01T08:00:00Z";
  REQUIRE(t.add(twin2));

  SECTION("exact ID") {
    auto r = t.resolve(id_of(0x3f1c2a9e, 2));
    REQUIRE(r);
    CHECK((*r)->name == "twin");
  }
  SECTION("unique prefix of 8 or more characters") {
    auto r = t.resolve("77aa0000");
    REQUIRE(r);
    CHECK((*r)->id == id_of(0x77aa0000, 3));
  }
  SECTION("a prefix shorter than 8 characters is not an ID") {
    auto r = t.resolve("77aa000");
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::not_found);
  }
  SECTION("an ambiguous prefix lists the candidates") {
    auto r = t.resolve("3f1c2a9e");
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::invalid_argument);
    CHECK_THAT(r.error().message, Catch::Contains(id_of(0x3f1c2a9e, 1)));
    CHECK_THAT(r.error().message, Catch::Contains(id_of(0x3f1c2a9e, 2)));
  }
  SECTION("name") {
    auto r = t.resolve("before-upgrade");
    REQUIRE(r);
    CHECK((*r)->id == id_of(0x3f1c2a9e, 1));
  }
  SECTION("an ambiguous name lists every candidate and asks for the ID") {
    auto r = t.resolve("twin");
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::invalid_argument);
    const std::string& m = r.error().message;
    CHECK_THAT(m, Catch::Contains("  " + id_of(0x3f1c2a9e, 2) + "  added 2026-11-28T01:02:03Z"));
    CHECK_THAT(m, Catch::Contains("  " + id_of(0x77aa0000, 3) + "  added 2026-12-01T08:00:00Z"));
    CHECK_THAT(m, Catch::Contains("pass the checkpoint ID"));
  }
  SECTION("nothing matches") {
    auto r = t.resolve("after-upgrade");
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::not_found);
    CHECK_THAT(r.error().message, Catch::Contains("after-upgrade"));
  }
}

TEST_CASE("remove_one gives the children to the parent") {
  Tree t = branched();
  SECTION("a middle checkpoint") {
    t.current = id_of(2);
    REQUIRE(t.remove_one(id_of(2)));
    CHECK(all_ids(t) == std::vector{id_of(1), id_of(3), id_of(4), id_of(5), id_of(6)});
    CHECK(ids(t.children(id_of(1))) == std::vector{id_of(3), id_of(4), id_of(6)});
    CHECK(t.current == id_of(1));
  }
  SECTION("the root: its children become roots") {
    t.current = id_of(5);
    REQUIRE(t.remove_one(id_of(1)));
    CHECK(t.find(id_of(2))->parent_id.empty());
    CHECK(t.find(id_of(4))->parent_id.empty());
    CHECK(t.current == id_of(5));
  }
  SECTION("the root while it is current: Now has no parent") {
    t.current = id_of(1);
    REQUIRE(t.remove_one(id_of(1)));
    CHECK(t.current.empty());
  }
  SECTION("a leaf") {
    t.current = id_of(5);
    REQUIRE(t.remove_one(id_of(5)));
    CHECK(t.find(id_of(5)) == nullptr);
    CHECK(t.checkpoints.size() == 5);
    CHECK(t.current == id_of(3));
  }
  SECTION("an unknown ID") {
    auto r = t.remove_one(id_of(42));
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::not_found);
    CHECK(t.checkpoints.size() == 6);
  }
}

TEST_CASE("remove_subtree removes the descendants too") {
  Tree t = branched();
  SECTION("current inside the subtree moves to the nearest survivor") {
    t.current = id_of(5);
    auto r = t.remove_subtree(id_of(2));
    REQUIRE(r);
    CHECK(*r == std::vector{id_of(2), id_of(3), id_of(5), id_of(6)});
    CHECK(all_ids(t) == std::vector{id_of(1), id_of(4)});
    CHECK(t.current == id_of(1));
  }
  SECTION("current outside the subtree stays") {
    t.current = id_of(4);
    REQUIRE(t.remove_subtree(id_of(3)));
    CHECK(all_ids(t) == std::vector{id_of(1), id_of(2), id_of(4), id_of(6)});
    CHECK(t.current == id_of(4));
  }
  SECTION("the whole tree") {
    t.current = id_of(6);
    auto r = t.remove_subtree(id_of(1));
    REQUIRE(r);
    CHECK(r->size() == 6);
    CHECK(t.checkpoints.empty());
    CHECK(t.current.empty());
  }
  SECTION("an unknown ID") {
    auto r = t.remove_subtree(id_of(42));
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::not_found);
  }
}
