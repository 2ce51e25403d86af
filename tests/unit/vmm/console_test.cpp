// The console buffers guest output: whole lines at once, a partial line after
// a short delay, everything on destruction; the panic watch sees every byte.
#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <sstream>
#include <string_view>
#include <thread>

#include "tests/unit/vmm/temp_dir.hpp"
#include "vmm/machine/console.hpp"

using namespace cairn;

namespace {
std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void put(Console& c, std::string_view text) {
  for (char ch : text) c.write(std::span(reinterpret_cast<const uint8_t*>(&ch), 1));  // as the UART does
}
}  // namespace

TEST_CASE("console: a finished line is written when its newline arrives") {
  test::TempDir dir;
  auto con = Console::open("file:" + dir / "log");
  REQUIRE(con);
  put(**con, "first line\nsecond ");
  CHECK(slurp(dir / "log").starts_with("first line\n"));
}

TEST_CASE("console: a partial line (a prompt) is written without a newline") {
  test::TempDir dir;
  auto con = Console::open("file:" + dir / "log");
  REQUIRE(con);
  put(**con, "login: ");
  // Due after Console::kFlushDelay; the bound leaves room for a loaded machine.
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (slurp(dir / "log") != "login: " && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  CHECK(slurp(dir / "log") == "login: ");
}

TEST_CASE("console: flush and destruction write out what is buffered") {
  test::TempDir dir;
  {
    auto con = Console::open("file:" + dir / "log");
    REQUIRE(con);
    put(**con, "abc");
    (*con)->flush();
    CHECK(slurp(dir / "log") == "abc");
    put(**con, "def");
  }
  CHECK(slurp(dir / "log") == "abcdef");
}

TEST_CASE("console: long output without newlines is written in bounded pieces") {
  test::TempDir dir;
  auto con = Console::open("file:" + dir / "log");
  REQUIRE(con);
  put(**con, std::string(10000, 'x'));
  CHECK(slurp(dir / "log").size() >= 8192);
}

TEST_CASE("console: the panic line is seen across single-byte writes") {
  test::TempDir dir;
  auto con = Console::open("file:" + dir / "log");
  REQUIRE(con);
  put(**con, "[ 1.0] Kernel panic - not ");
  CHECK_FALSE((*con)->panic_seen());
  put(**con, "syncing: VFS\n");
  CHECK((*con)->panic_seen());
}

TEST_CASE("console: a bad spec is refused") {
  auto con = Console::open("tty");
  REQUIRE_FALSE(con);
  CHECK(con.error().message.find("stdio") != std::string::npos);
}
