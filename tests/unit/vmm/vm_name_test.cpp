#include <catch2/catch.hpp>

#include "vmm/vmstore/uuid.hpp"
#include "vmm/vmstore/vm_name.hpp"

using namespace cairn;

TEST_CASE("VM names: accepted forms", "[vmctl]") {
  std::vector<std::string> names = {"a", "web1", "Web-1.test_2", "0", "a.b", std::string(64, 'x')};
  for (auto& ok : names) {
    INFO(ok);
    CHECK(validate_vm_name(ok).has_value());
  }
}

TEST_CASE("VM names: rejected forms name the problem", "[vmctl]") {
  auto empty = validate_vm_name("");
  REQUIRE_FALSE(empty);
  CHECK(empty.error().code == Errc::invalid_argument);
  CHECK_THAT(empty.error().message, Catch::Contains("empty"));

  auto longer = validate_vm_name(std::string(65, 'x'));
  REQUIRE_FALSE(longer);
  CHECK_THAT(longer.error().message, Catch::Contains("65 characters"));

  auto slash = validate_vm_name("a/b");
  REQUIRE_FALSE(slash);
  CHECK_THAT(slash.error().message, Catch::Contains("'/'"));

  auto ctrl = validate_vm_name(std::string("a\nb"));
  REQUIRE_FALSE(ctrl);
  CHECK_THAT(ctrl.error().message, Catch::Contains("\\x0a"));

  for (const char* bad : {".", "..", "-rf", "a b", "na*me", "\xc3\xa9t\xc3\xa9"})
    CHECK_FALSE(validate_vm_name(bad));
}

TEST_CASE("uuid_v4: version and variant bits, distinct values", "[vmctl]") {
  auto a = uuid_v4();
  auto b = uuid_v4();
  REQUIRE(a);
  REQUIRE(b);
  CHECK(is_uuid(*a));
  CHECK(a->size() == 36);
  CHECK((*a)[14] == '4');
  CHECK(std::string("89ab").find((*a)[19]) != std::string::npos);
  CHECK(*a != *b);
  CHECK_FALSE(is_uuid("not-a-uuid"));
  CHECK_FALSE(is_uuid("3F1C2A9E-0000-4000-8000-000000000000"));  // upper case is not what we write
}
