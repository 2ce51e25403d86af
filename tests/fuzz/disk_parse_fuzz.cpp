// libFuzzer target: bytes through the disk layer open/parse path (header
// slots, BAT, log replay, entry checks; Layer::open over a memfd).
//
// Input: one flags byte, then the layer file. Flags re-seal checksums after
// the mutation so that damaged fields reach the checks behind them:
//   bit 0  header slot 0 checksum (bytes 4088..4095 = XXH64 of 0..4087)
//   bit 1  header slot 1 checksum
//   bit 2  every 4096-byte block from the log offset on that starts with
//          "CAIRNLOG" (same checksum layout)
//   bit 3  each header's bat_checksum, from the BAT copy it names (done
//          before the header re-seal)
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "snapshot/disk/chain.hpp"
#include "snapshot/disk/format.hpp"
#include "snapshot/disk/inspect.hpp"
#include "snapshot/disk/io.hpp"
#include "tests/fuzz/fuzz_seeds.hpp"

namespace {
using namespace cairn::disk;

constexpr uint8_t kResealSlot0 = 1, kResealSlot1 = 2, kResealLog = 4, kFixBatChecksum = 8;
constexpr size_t kChecksumAt = 4088;

uint64_t get64(const uint8_t* p) { uint64_t v; std::memcpy(&v, p, 8); return v; }
uint32_t get32(const uint8_t* p) { uint32_t v; std::memcpy(&v, p, 4); return v; }
void put64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, 8); }

void reseal_block(std::vector<uint8_t>& img, size_t at) {
  put64(&img[at + kChecksumAt], checksum(std::span(img).subspan(at, kChecksumAt)));
}

void fix_bat_checksum(std::vector<uint8_t>& img, size_t slot_at) {
  const uint8_t* h = &img[slot_at];
  uint32_t active = get32(h + 36);
  if (active > 1) return;
  uint64_t off = get64(h + 88 + 8 * active), entries = get64(h + 104);
  if (off > img.size() || entries > (img.size() - off) / 8) return;
  put64(&img[slot_at + 112], checksum(std::span(img).subspan(off, entries * 8)));
}

std::vector<uint8_t> read_file(const std::string& path) {
  std::vector<uint8_t> out;
  cairn::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  auto size = file_size(fd.get());
  if (!fd || !size) return out;
  out.resize(*size);
  if (!pread_full(fd.get(), 0, out)) out.clear();
  return out;
}

void die(const char* what, const cairn::Error& e) {
  std::fprintf(stderr, "disk_parse_fuzz seed: %s: %s\n", what, e.message.c_str());
  std::abort();
}

// A base layer with data, zeroed blocks and two flushes (so two log blocks of
// the current epoch replay on open), and a child layer naming it as parent.
std::vector<std::vector<uint8_t>> make_seeds() {
  char tmpl[] = "/tmp/cairn-fuzz-seed-XXXXXX";
  if (!::mkdtemp(tmpl)) std::abort();
  const std::string dir = tmpl, base = dir + "/base.cdisk", child = dir + "/child.cdisk";
  const CreateParams params{.virtual_size = 64 << 10, .block_shift = 12, .log_bytes = 4 * kLogBlockBytes};
  if (auto r = Layer::create(base, params); !r) die("create base", r.error());
  std::vector<uint8_t> block(4096);
  {
    auto chain = Chain::open(base, OpenOptions{.writable = true});
    if (!chain) die("open base", chain.error());
    for (int i = 0; i < 3; ++i) {
      std::memset(block.data(), 0x11 * (i + 1), block.size());
      if (auto r = (*chain)->write(uint64_t(i) * 3 * 4096, block); !r) die("write", r.error());
    }
    if (auto r = (*chain)->write_zeroes(4 * 4096, 2 * 4096); !r) die("zero", r.error());
    if (auto r = (*chain)->flush(); !r) die("flush", r.error());
    if (auto r = (*chain)->write(12 * 4096 + 100, std::span(block).first(1000)); !r) die("write", r.error());
    if (auto r = (*chain)->flush(); !r) die("flush", r.error());
  }
  auto top = Layer::open(base, false);
  if (!top) die("reopen base", top.error());
  CreateParams cp = params;
  cp.parent = ParentLink{(*top)->header().uuid, (*top)->header().generation, "base.cdisk"};
  top->reset();
  if (auto r = Layer::create(child, cp); !r) die("create child", r.error());
  {
    auto chain = Chain::open(child, OpenOptions{.writable = true});
    if (!chain) die("open child", chain.error());
    std::memset(block.data(), 0x5a, block.size());
    if (auto r = (*chain)->write(3 * 4096, block); !r) die("write", r.error());
    if (auto r = (*chain)->flush(); !r) die("flush", r.error());
  }
  std::vector<uint8_t> b = read_file(base), c = read_file(child);
  ::unlink(base.c_str());
  ::unlink(child.c_str());
  ::rmdir(dir.c_str());
  using cairn::fuzz::with_flags;
  return {with_flags(0x0f, b), with_flags(0x00, b), with_flags(0x0f, c)};
}
}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  cairn::fuzz::write_seeds(*argc, *argv, make_seeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t flags = data[0];
  std::vector<uint8_t> img(data + 1, data + size);

  // The slot and log-block parsers on the bytes as they came.
  (void)parse_header(img);
  std::vector<LogRecord> recs;
  if (img.size() >= kLogOffset + kLogBlockBytes)
    (void)parse_log_block(std::span(img).subspan(kLogOffset), img.size() >= 88 ? get64(&img[80]) : 1, 0, &recs);

  if (flags & kResealLog)
    for (size_t at = kLogOffset; at + kLogBlockBytes <= img.size() && at < kLogOffset + kMaxLogBytes;
         at += kLogBlockBytes)
      if (std::memcmp(&img[at], "CAIRNLOG", 8) == 0) reseal_block(img, at);
  for (size_t slot = 0; slot < 2; ++slot) {
    if (img.size() < (slot + 1) * kHeaderSlotBytes) break;
    if (flags & kFixBatChecksum) fix_bat_checksum(img, slot * kHeaderSlotBytes);
    if (flags & (slot == 0 ? kResealSlot0 : kResealSlot1)) reseal_block(img, slot * kHeaderSlotBytes);
  }

  if (img.size() <= (16u << 20)) (void)validate_layer_image(img);
  return 0;
}
