// Shared helpers for device tests: a recording interrupt line, a temporary
// file, and a split virtqueue laid out by hand in anonymous guest memory.
#pragma once
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "devices/interrupt.hpp"
#include "devices/virtio/queue.hpp"
#include "vmm/base/guest_memory.hpp"

namespace cairn::test {

class RecordingLine : public InterruptLine {
 public:
  void set_level(bool high) override {
    level = high;
    levels.push_back(high);
  }
  void trigger() override { ++triggers; }
  bool level = false;
  std::vector<bool> levels;  // every transition, in order
  int triggers = 0;
};

// A file under $TMPDIR (or /tmp) removed when the object dies.
class TempFile {
 public:
  explicit TempFile(uint64_t size, const std::string& stem = "cairn-dev-test") {
    const char* dir = std::getenv("TMPDIR");
    path = std::string(dir && *dir ? dir : "/tmp") + "/" + stem + "-XXXXXX";
    int fd = ::mkstemp(path.data());
    REQUIRE(fd >= 0);
    REQUIRE(::ftruncate(fd, static_cast<off_t>(size)) == 0);
    ::close(fd);
  }
  ~TempFile() { ::unlink(path.c_str()); }
  std::vector<uint8_t> read_all() const {
    std::vector<uint8_t> out;
    int fd = ::open(path.c_str(), O_RDONLY);
    uint8_t buf[4096];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0) out.insert(out.end(), buf, buf + n);
    ::close(fd);
    return out;
  }
  void write_at(uint64_t off, const std::vector<uint8_t>& data) const {
    int fd = ::open(path.c_str(), O_WRONLY);
    REQUIRE(::pwrite(fd, data.data(), data.size(), static_cast<off_t>(off)) == static_cast<ssize_t>(data.size()));
    ::close(fd);
  }
  std::string path;
};

inline constexpr uint16_t kDescNext = 1, kDescWrite = 2, kDescIndirect = 4;

// A driver-side view of a split ring: the descriptor table at 0x1000, the
// available ring at 0x2000, the used ring at 0x3000, buffers from 0x10000.
struct TestRing {
  static constexpr uint64_t kDesc = 0x1000, kAvail = 0x2000, kUsed = 0x3000, kData = 0x10000;

  explicit TestRing(uint16_t size = 16, uint64_t mem_size = 1 << 20, uint64_t gpa = 0)
      : mem(make(gpa, mem_size)), q(size), base(gpa) {
    q.config().size = size;
    q.config().desc_table = gpa + kDesc;
    q.config().avail_ring = gpa + kAvail;
    q.config().used_ring = gpa + kUsed;
    q.config().ready = true;
  }
  static GuestMemory make(uint64_t gpa, uint64_t size) {
    auto m = GuestMemory::create_anonymous(gpa, size);
    REQUIRE(m);
    return std::move(*m);
  }
  uint16_t size() const { return q.config().size; }
  void set_desc(uint16_t i, uint64_t addr, uint32_t len, uint16_t flags = 0, uint16_t next = 0) {
    uint64_t at = base + kDesc + 16ULL * i;
    REQUIRE(mem.write_obj(at, addr));
    REQUIRE(mem.write_obj(at + 8, len));
    REQUIRE(mem.write_obj(at + 12, flags));
    REQUIRE(mem.write_obj(at + 14, next));
  }
  // Puts `head` in the next available slot and publishes it.
  void publish(uint16_t head) {
    REQUIRE(mem.write_obj<uint16_t>(base + kAvail + 4 + 2ULL * (avail_idx % size()), head));
    ++avail_idx;
    set_avail_idx(avail_idx);
  }
  void set_avail_idx(uint16_t idx) { REQUIRE(mem.write_obj<uint16_t>(base + kAvail + 2, idx)); }
  void set_avail_flags(uint16_t f) { REQUIRE(mem.write_obj<uint16_t>(base + kAvail, f)); }
  void set_used_event(uint16_t v) { REQUIRE(mem.write_obj<uint16_t>(base + kAvail + 4 + 2ULL * size(), v)); }
  uint16_t avail_event() { return *mem.read_obj<uint16_t>(base + kUsed + 4 + 8ULL * size()); }
  uint16_t used_idx() { return *mem.read_obj<uint16_t>(base + kUsed + 2); }
  std::pair<uint32_t, uint32_t> used(uint16_t i) {
    uint64_t at = base + kUsed + 4 + 8ULL * (i % size());
    return {*mem.read_obj<uint32_t>(at), *mem.read_obj<uint32_t>(at + 4)};
  }
  void fill(uint64_t gpa, const std::vector<uint8_t>& bytes) { REQUIRE(mem.write(gpa, bytes)); }
  std::vector<uint8_t> bytes(uint64_t gpa, size_t n) {
    std::vector<uint8_t> out(n);
    REQUIRE(mem.read(gpa, out));
    return out;
  }

  GuestMemory mem;
  Virtqueue q;
  uint64_t base;
  uint16_t avail_idx = 0;
};

}  // namespace cairn::test
