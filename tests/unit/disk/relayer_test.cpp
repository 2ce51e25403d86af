// A new top layer put on a chain that stays open (Chain::prepare_child,
// push_child, pop_child), as a running VM's disk is frozen into a checkpoint.
#include <sys/stat.h>

#include "snapshot/disk/layer.hpp"
#include "tests/unit/disk/disk_test_util.hpp"

namespace cairn::disk::test {
namespace {

constexpr uint64_t kSize = 1 << 20;
constexpr uint32_t kShift = 12;

void put(Chain& c, std::vector<uint8_t>& model, uint64_t off, size_t len, uint8_t v) {
  std::vector<uint8_t> d(len, v);
  REQUIRE(c.write(off, d));
  std::copy(d.begin(), d.end(), model.begin() + long(off));
}

bool exists(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0;
}

}  // namespace

TEST_CASE("a chain in use gains a child without closing: old writes stay below, new ones go to the child") {
  TempDir dir;
  const std::string base = dir / "base", mid = dir / "mid", top = dir / "top";
  REQUIRE(create_base(base, kSize, kShift));
  std::vector<uint8_t> model(kSize, 0);
  {
    auto b = open_chain(base, true);
    REQUIRE(b);
    put(**b, model, 5000, 9000, 7);
  }
  REQUIRE(create_child(base, mid));
  auto c = open_chain(mid, true);
  REQUIRE(c);
  Chain& chain = **c;
  // No write yet in this session: preparing must fix the generation first,
  // or the guest's first write after it would break the child's link.
  auto child = chain.prepare_child(top);
  REQUIRE(child);
  CHECK(exists(top));
  put(chain, model, 100, 3000, 1);  // after preparing, before the switch: still the old top's
  const auto at_freeze = model;
  REQUIRE(chain.push_child(std::move(*child)));
  CHECK(chain.depth() == 3);
  CHECK(chain.top().path() == top);
  CHECK(first_diff(read_all(chain), model) == -1);
  put(chain, model, 2000, 8192, 2);  // copy-on-write into the child over both parents
  put(chain, model, kSize - 4096, 4096, 3);
  REQUIRE(chain.write_zeroes(8192, 4096));
  std::fill(model.begin() + 8192, model.begin() + 8192 + 4096, 0);
  REQUIRE(chain.flush());
  CHECK(first_diff(read_all(chain), model) == -1);

  // The old top is a parent now: shared with readers, closed to writers.
  CHECK_FALSE(Layer::open(mid, true));
  CHECK(first_diff(read_all(mid), at_freeze) == -1);

  c->reset();
  // Opened again from the files, every link checks out and nothing moved.
  CHECK(first_diff(read_all(top), model) == -1);
  CHECK(first_diff(read_all(mid), at_freeze) == -1);
  auto again = open_chain(top, true);
  REQUIRE(again);
  CHECK((*again)->depth() == 3);
}

TEST_CASE("a pushed child taken off again leaves the old top writable") {
  TempDir dir;
  const std::string base = dir / "base", top = dir / "top";
  REQUIRE(create_base(base, kSize, kShift));
  std::vector<uint8_t> model(kSize, 0);
  auto c = open_chain(base, true);
  REQUIRE(c);
  put(**c, model, 0, 4096, 5);
  auto child = (*c)->prepare_child(top);
  REQUIRE(child);
  REQUIRE((*c)->push_child(std::move(*child)));
  auto back = (*c)->pop_child();
  REQUIRE(back);
  CHECK((*back)->path() == top);
  back->reset();
  CHECK((*c)->depth() == 1);
  CHECK((*c)->top().writable());
  put(**c, model, 40000, 100, 6);
  REQUIRE((*c)->flush());
  CHECK(first_diff(read_all(**c), model) == -1);
  CHECK_FALSE((*c)->pop_child());  // nothing under the base
  c->reset();
  CHECK(first_diff(read_all(base), model) == -1);
}

TEST_CASE("push_child refuses a layer that is not the top's child") {
  TempDir dir;
  REQUIRE(create_base(dir / "a", kSize, kShift));
  REQUIRE(create_base(dir / "b", kSize, kShift));
  auto a = open_chain(dir / "a", true);
  auto b = open_chain(dir / "b", true);
  REQUIRE(a);
  REQUIRE(b);
  auto child_of_b = (*b)->prepare_child(dir / "b-child");
  REQUIRE(child_of_b);
  auto r = (*a)->push_child(std::move(*child_of_b));
  REQUIRE_FALSE(r);
  CHECK(r.error().code == Errc::corrupt);
  CHECK((*a)->depth() == 1);
  CHECK((*a)->top().writable());

  SECTION("a child not open for writing is refused") {
    auto ro = Layer::open(dir / "b-child", false);
    REQUIRE(ro);
    auto p = (*a)->push_child(std::move(*ro));
    REQUIRE_FALSE(p);
    CHECK(p.error().code == Errc::invalid_argument);
    CHECK((*a)->depth() == 1);
  }
  SECTION("a read-only chain gets no child") {
    b->reset();
    auto ro = open_chain(dir / "b", false);
    REQUIRE(ro);
    auto p = (*ro)->prepare_child(dir / "other");
    REQUIRE_FALSE(p);
    CHECK(p.error().code == Errc::invalid_state);
    CHECK_FALSE(exists(dir / "other"));
  }
}

}  // namespace cairn::disk::test
