// Helper for the crash test, killed with SIGKILL at random points. Reports on
// stdout (unbuffered) what completed:
//   disk_crash_writer write TOP SEED       ops from CrashOps(SEED): "D i" after op i,
//                                          "F i" after the flush that follows it
//   disk_crash_writer diff TOP NEW         create_child(TOP, NEW), then "T NEW"
//   disk_crash_writer mergedown PARENT TOP merge_into_child, then "M"
//   disk_crash_writer mergeup TOP          merge_into_parent, then "T"
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "snapshot/disk/merge.hpp"
#include "tests/unit/disk/crash_ops.hpp"

using namespace cairn::disk;

namespace {
int die(const cairn::Error& e) {
  std::fprintf(stderr, "disk_crash_writer: %s\n", e.message.c_str());
  return 1;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return 2;
  std::string mode = argv[1], a = argv[2], b = argc > 3 ? argv[3] : "";
  if (mode == "diff") {
    if (auto r = create_child(a, b); !r) return die(r.error());
    dprintf(1, "T %s\n", b.c_str());
    return 0;
  }
  if (mode == "mergedown") {
    if (auto r = merge_into_child(a, b); !r) return die(r.error());
    dprintf(1, "M\n");
    return 0;
  }
  if (mode == "mergeup") {
    if (auto r = merge_into_parent(a); !r) return die(r.error());
    dprintf(1, "T\n");
    return 0;
  }
  if (mode != "write") return 2;
  auto chain = open_chain(a, true);
  if (!chain) return die(chain.error());
  test::CrashOps ops(std::strtoull(b.c_str(), nullptr, 10));
  std::vector<uint8_t> buf;
  for (uint64_t i = 0; i < 100000; ++i) {
    auto op = ops.next();
    cairn::Result<void> r;
    if (op.zero) {
      r = (*chain)->write_zeroes(op.off, op.len);
    } else {
      buf.resize(op.len);
      for (uint64_t j = 0; j < op.len; ++j) buf[j] = ops.fill(i, op.off + j);
      r = (*chain)->write(op.off, buf);
    }
    if (!r) return die(r.error());
    dprintf(1, "D %llu\n", (unsigned long long)i);
    if (op.flush) {
      if (auto f = (*chain)->flush(); !f) return die(f.error());
      dprintf(1, "F %llu\n", (unsigned long long)i);
    }
  }
  return 0;
}
