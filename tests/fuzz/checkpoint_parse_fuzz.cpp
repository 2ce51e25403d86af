// libFuzzer target: the checkpoint parsers (the state container, the machine
// state in it, and the memory image header, region table and chunk index).
//
// Input: one flags byte, then the body. Bits 0-1 pick the mode:
//   0, 3  the body is a state file for decode_machine_state
//   1     the body is a list of sections, each [type][instance][u16 length]
//         [payload]; the type byte picks one of the known SectionTypes. They
//         are packed by encode_sections into a well-formed container, so the
//         JSON, struct-size and section-set checks behind its checksums run
//   2     the body is a memory image: MemoryImageReader::open on a memfd,
//         verify_chunks, and load into zeroed buffers when the layout is at
//         most 16 MiB
// bit 2 re-seals the checksums (and the file-size field) of modes 0 and 2
// after the mutation, so damaged fields reach the checks behind them; bit 3
// loads the memory image with already_zero = true.
#include <sys/mman.h>
#include <xxhash.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "snapshot/memory/bytes.hpp"
#include "snapshot/memory/file_io.hpp"
#include "snapshot/memory/memory_image.hpp"
#include "snapshot/state/container.hpp"
#include "snapshot/state/machine_state.hpp"
#include "tests/fuzz/fuzz_seeds.hpp"

namespace {
using namespace cairn;
using namespace cairn::snap;

constexpr uint8_t kModeState = 0, kModeSections = 1, kModeMemory = 2;
constexpr uint8_t kReseal = 4, kAlreadyZero = 8;
constexpr uint64_t kMaxLoadBytes = 16 << 20;

constexpr uint32_t kTypes[] = {kSecConfig, kSecDevices, kSecPicMaster, kSecPicSlave, kSecIoapic, kSecPit,
                               kSecClock,  kSecRegs,    kSecSregs,     kSecXsave,    kSecXcrs,   kSecMsrs,
                               kSecLapic,  kSecEvents,  kSecDebugregs, kSecMpState,  kSecTscKhz};
constexpr size_t kTypeCount = sizeof(kTypes) / sizeof(kTypes[0]);

// State container: each section checksum whose payload lies in the file, the
// file size, then the header+table checksum.
void reseal_state(std::vector<uint8_t>& f) {
  if (f.size() < kStateHeaderSize) return;
  put_u64(f, 16, f.size());
  uint32_t count = get_u32(f, 12);
  if (count > kStateMaxSections || kStateHeaderSize + uint64_t{kStateEntrySize} * count > f.size()) return;
  for (uint32_t i = 0; i < count; ++i) {
    size_t e = kStateHeaderSize + i * kStateEntrySize;
    uint64_t at = get_u64(f, e + 8), len = get_u64(f, e + 16);
    if (at <= f.size() && len <= f.size() - at) put_u64(f, e + 24, XXH3_64bits(f.data() + at, len));
  }
  XXH3_state_t* st = XXH3_createState();
  XXH3_64bits_reset(st);
  XXH3_64bits_update(st, f.data(), 24);
  XXH3_64bits_update(st, f.data() + kStateHeaderSize, count * kStateEntrySize);
  put_u64(f, 24, XXH3_64bits_digest(st));
  XXH3_freeState(st);
}

// Memory image: each chunk checksum whose bytes lie in the file, the file
// size, then the header+region table+index checksum.
void reseal_memory(std::vector<uint8_t>& f) {
  if (f.size() < kMemoryHeaderSize) return;
  put_u64(f, 40, f.size());
  uint32_t regions = get_u32(f, 20);
  uint64_t chunks = get_u64(f, 24), index = get_u64(f, 32);
  if (regions > kMemoryMaxRegions || kMemoryHeaderSize + kMemoryRegionEntrySize * regions > f.size()) return;
  if (index > f.size() || chunks > (f.size() - index) / kMemoryIndexEntrySize) return;
  for (uint64_t i = 0; i < chunks; ++i) {
    size_t e = index + i * kMemoryIndexEntrySize;
    uint64_t at = get_u64(f, e), len = get_u32(f, e + 8);
    if (at <= f.size() && len <= f.size() - at) put_u64(f, e + 16, XXH3_64bits(f.data() + at, len));
  }
  XXH3_state_t* st = XXH3_createState();
  XXH3_64bits_reset(st);
  XXH3_64bits_update(st, f.data(), 56);
  XXH3_64bits_update(st, f.data() + kMemoryHeaderSize, regions * kMemoryRegionEntrySize);
  XXH3_64bits_update(st, f.data() + index, chunks * kMemoryIndexEntrySize);
  put_u64(f, 56, XXH3_64bits_digest(st));
  XXH3_freeState(st);
}

std::vector<Section> parse_section_list(std::span<const uint8_t> in) {
  std::vector<Section> out;
  size_t at = 0;
  while (at + 4 <= in.size() && out.size() < kStateMaxSections) {
    Section s;
    s.type = kTypes[in[at] % kTypeCount];
    s.instance = in[at + 1];
    size_t len = std::min<size_t>(in[at + 2] | size_t{in[at + 3]} << 8, in.size() - at - 4);
    s.payload.assign(in.begin() + at + 4, in.begin() + at + 4 + len);
    out.push_back(std::move(s));
    at += 4 + len;
  }
  return out;
}

void run_memory_image(const std::vector<uint8_t>& bytes, bool already_zero) {
  UniqueFd fd(::memfd_create("cairn-fuzz-mem", MFD_CLOEXEC));
  if (!fd || !pwrite_full(fd.get(), 0, bytes, "fuzz input")) std::abort();
  auto reader = MemoryImageReader::open(std::move(fd), "fuzz input");
  if (!reader) return;
  if (!reader->verify_chunks(1)) return;
  uint64_t total = 0;
  for (auto& r : reader->layout()) total += r.size;
  if (total > kMaxLoadBytes) return;
  std::vector<std::vector<uint8_t>> bufs;
  std::vector<RamRegion> regions;
  for (auto& r : reader->layout()) {
    bufs.emplace_back(r.size, 0);
    regions.push_back({r.gpa, r.size, bufs.back().data()});
  }
  (void)reader->load(regions, already_zero, 1);
}

// --- seeds -----------------------------------------------------------------

template <class T>
void randomize(T& v, std::mt19937_64& rng) {
  auto* p = reinterpret_cast<uint8_t*>(&v);
  for (size_t i = 0; i < sizeof(T); ++i) p[i] = static_cast<uint8_t>(rng());
}

MachineState sample_state() {
  std::mt19937_64 rng(1);
  MachineState s;
  s.config = {.memory = 256ULL << 20, .cpus = 1, .disks = {{false, 1 << 30}, {true, 4096}}, .vsock_cid = 7,
              .kernel_cmdline = "console=ttyS0"};
  randomize(s.vm.pic_master, rng);
  randomize(s.vm.pic_slave, rng);
  randomize(s.vm.ioapic, rng);
  randomize(s.vm.pit, rng);
  randomize(s.vm.clock, rng);
  VcpuState v;
  randomize(v.mp_state, rng);
  randomize(v.regs, rng);
  randomize(v.sregs, rng);
  v.xsave.assign(4096, 0);
  randomize(v.xcrs, rng);
  randomize(v.debugregs, rng);
  randomize(v.lapic, rng);
  for (uint32_t m = 0; m < 8; ++m) v.msrs.push_back({0xc0000080 + m, 0, rng()});
  randomize(v.events, rng);
  v.tsc_khz = 2'400'000;
  s.vcpus.push_back(std::move(v));
  s.devices.serial.rx_fifo = {'a', 'b'};
  s.devices.i8042.output = 0x55;
  VirtioDeviceState blk{"virtio-blk", {}, std::nullopt};
  blk.transport.status = 15;
  blk.transport.queues.resize(1);
  blk.transport.queues[0].config.size = 256;
  VirtioDeviceState vs{"virtio-vsock", {}, VsockState{7}};
  vs.transport.queues.resize(3);
  s.devices.virtio = {blk, vs};
  return s;
}

std::vector<uint8_t> sample_memory_image() {
  // Two regions, 16 KiB chunks: a noise page (stored raw), a pattern page
  // (lz4), empty chunks, and a region of one pattern page.
  std::vector<uint8_t> r0(64 << 10, 0), r1(16 << 10, 0);
  std::mt19937_64 rng(2);
  for (size_t i = 0; i < 4096; ++i) r0[i] = static_cast<uint8_t>(rng());
  for (size_t i = 0; i < 4096; i += 2) r0[5 * 4096 + i] = 0x42;
  for (size_t i = 0; i < 4096; i += 3) r1[i] = 0x17;
  RamRegion regions[] = {{0, r0.size(), r0.data()}, {1 << 20, r1.size(), r1.data()}};
  UniqueFd fd(::memfd_create("cairn-fuzz-seed", MFD_CLOEXEC));
  auto stats = write_memory_image(fd.get(), regions, {.chunk_size = 16 << 10, .threads = 1});
  if (!stats) std::abort();
  std::vector<uint8_t> out(stats->file_bytes);
  if (!pread_full(fd.get(), 0, out, "seed")) std::abort();
  return out;
}

std::vector<std::vector<uint8_t>> make_seeds() {
  auto state = encode_machine_state(sample_state());
  if (!state) std::abort();
  auto sections = decode_sections(*state, "seed");
  if (!sections) std::abort();
  std::vector<uint8_t> list;
  for (auto& s : *sections) {
    size_t t = 0;
    while (kTypes[t] != s.type) ++t;
    list.insert(list.end(), {uint8_t(t), uint8_t(s.instance), uint8_t(s.payload.size()),
                             uint8_t(s.payload.size() >> 8)});
    list.insert(list.end(), s.payload.begin(), s.payload.end());
  }
  auto mem = sample_memory_image();
  using cairn::fuzz::with_flags;
  return {with_flags(kModeState, *state),   with_flags(kModeState | kReseal, *state),
          with_flags(kModeSections, list),  with_flags(kModeMemory, mem),
          with_flags(kModeMemory | kReseal, mem), with_flags(kModeMemory | kReseal | kAlreadyZero, mem)};
}
}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  cairn::fuzz::write_seeds(*argc, *argv, make_seeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t flags = data[0];
  std::vector<uint8_t> body(data + 1, data + size);
  switch (flags & 3) {
    case kModeSections: {
      auto file = encode_sections(parse_section_list(body));
      if (file) (void)decode_machine_state(*file, "fuzz input");
      break;
    }
    case kModeMemory:
      if (flags & kReseal) reseal_memory(body);
      run_memory_image(body, flags & kAlreadyZero);
      break;
    default:
      if (flags & kReseal) reseal_state(body);
      (void)decode_machine_state(body, "fuzz input");
      break;
  }
  return 0;
}
