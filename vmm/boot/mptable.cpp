#include "vmm/boot/mptable.hpp"

#include <cstddef>
#include <cstring>
#include <vector>

#include "vmm/boot/layout.hpp"

namespace cairn {

namespace {

struct [[gnu::packed]] MpFloatingPointer {
  char signature[4];
  uint32_t config_addr;
  uint8_t length;
  uint8_t spec_rev;
  uint8_t checksum;
  uint8_t features[5];
};

struct [[gnu::packed]] MpConfigHeader {
  char signature[4];
  uint16_t base_length;
  uint8_t spec_rev;
  uint8_t checksum;
  char oem_id[8];
  char product_id[12];
  uint32_t oem_table;
  uint16_t oem_table_size;
  uint16_t entry_count;
  uint32_t lapic_addr;
  uint16_t ext_length;
  uint8_t ext_checksum;
  uint8_t reserved;
};

struct [[gnu::packed]] MpProcessor {
  uint8_t type;
  uint8_t apic_id;
  uint8_t apic_version;
  uint8_t flags;
  uint32_t signature;
  uint32_t features;
  uint32_t reserved[2];
};

struct [[gnu::packed]] MpBus {
  uint8_t type;
  uint8_t bus_id;
  char bus_type[6];
};

struct [[gnu::packed]] MpIoApic {
  uint8_t type;
  uint8_t id;
  uint8_t version;
  uint8_t flags;
  uint32_t addr;
};

struct [[gnu::packed]] MpInterrupt {  // I/O (type 3) and local (type 4) assignments
  uint8_t type;
  uint8_t irq_type;
  uint16_t flags;
  uint8_t src_bus;
  uint8_t src_irq;
  uint8_t dst_apic;
  uint8_t dst_pin;
};

static_assert(sizeof(MpFloatingPointer) == 16 && sizeof(MpConfigHeader) == 44 && sizeof(MpProcessor) == 20 &&
              sizeof(MpBus) == 8 && sizeof(MpIoApic) == 8 && sizeof(MpInterrupt) == 8);

enum : uint8_t { kProcessor = 0, kBus = 1, kIoApic = 2, kIoInterrupt = 3, kLocalInterrupt = 4 };
enum : uint8_t { kIntTypeInt = 0, kIntTypeNmi = 1, kIntTypeExtInt = 3 };
constexpr uint8_t kSpecRev = 4;            // MP spec 1.4
constexpr uint8_t kLapicVersion = 0x14;    // integrated local APIC
constexpr uint8_t kIoApicVersion = 0x11;
constexpr uint8_t kCpuEnabled = 1, kCpuBsp = 2;
constexpr uint32_t kCpuSignature = 0x600;  // family 6; Linux reads only APIC id and flags
constexpr uint32_t kCpuFeatures = 0x201;   // FPU, APIC
constexpr uint8_t kAllApics = 0xff;

uint8_t checksum(const uint8_t* p, size_t n) {
  uint8_t sum = 0;
  for (size_t i = 0; i < n; ++i) sum = static_cast<uint8_t>(sum + p[i]);
  return static_cast<uint8_t>(-sum);
}

template <class T>
void append(std::vector<uint8_t>& out, const T& v) {
  size_t at = out.size();
  out.resize(at + sizeof(T));
  std::memcpy(out.data() + at, &v, sizeof(T));
}

constexpr uint64_t kEntriesFixed = 1 + 1 + kIoApicPins + 2;  // bus, IO-APIC, IRQs, LINT0/1

}  // namespace

uint64_t mptable_size(unsigned vcpus) {
  return sizeof(MpFloatingPointer) + sizeof(MpConfigHeader) + uint64_t{vcpus} * sizeof(MpProcessor) +
         sizeof(MpBus) + sizeof(MpIoApic) + (kIoApicPins + 2) * sizeof(MpInterrupt);
}

static_assert(sizeof(MpFloatingPointer) + sizeof(MpConfigHeader) + kMaxVcpus * sizeof(MpProcessor) +
                  sizeof(MpBus) + sizeof(MpIoApic) + (kIoApicPins + 2) * sizeof(MpInterrupt) <=
              layout::kMpTableMaxSize);

Result<void> write_mptable(GuestMemory& mem, unsigned vcpus) {
  if (vcpus == 0 || vcpus > kMaxVcpus)
    return fail(Errc::invalid_argument, "{} vCPUs requested; between 1 and {} are supported", vcpus, kMaxVcpus);

  std::vector<uint8_t> table;  // configuration table: header first, patched at the end
  table.resize(sizeof(MpConfigHeader));
  for (unsigned i = 0; i < vcpus; ++i) {
    MpProcessor p{};
    p.type = kProcessor;
    p.apic_id = static_cast<uint8_t>(i);
    p.apic_version = kLapicVersion;
    p.flags = static_cast<uint8_t>(kCpuEnabled | (i == 0 ? kCpuBsp : 0));
    p.signature = kCpuSignature;
    p.features = kCpuFeatures;
    append(table, p);
  }
  append(table, MpBus{kBus, 0, {'I', 'S', 'A', ' ', ' ', ' '}});
  const auto ioapic_id = static_cast<uint8_t>(vcpus);
  append(table, MpIoApic{kIoApic, ioapic_id, kIoApicVersion, 1, static_cast<uint32_t>(layout::kIoApicAddr)});
  for (uint8_t irq = 0; irq < kIoApicPins; ++irq)
    append(table, MpInterrupt{kIoInterrupt, kIntTypeInt, 0, 0, irq, ioapic_id, irq});
  append(table, MpInterrupt{kLocalInterrupt, kIntTypeExtInt, 0, 0, 0, 0, 0});
  append(table, MpInterrupt{kLocalInterrupt, kIntTypeNmi, 0, 0, 0, kAllApics, 1});

  MpConfigHeader h{};
  std::memcpy(h.signature, "PCMP", 4);
  h.base_length = static_cast<uint16_t>(table.size());
  h.spec_rev = kSpecRev;
  std::memcpy(h.oem_id, "CAIRN   ", 8);
  std::memcpy(h.product_id, "CAIRN VMM   ", 12);
  h.entry_count = static_cast<uint16_t>(vcpus + kEntriesFixed);
  h.lapic_addr = static_cast<uint32_t>(layout::kLapicAddr);
  std::memcpy(table.data(), &h, sizeof(h));
  table[offsetof(MpConfigHeader, checksum)] = checksum(table.data(), table.size());

  MpFloatingPointer fp{};
  std::memcpy(fp.signature, "_MP_", 4);
  fp.config_addr = static_cast<uint32_t>(layout::kMpTableAddr + sizeof(MpFloatingPointer));
  fp.length = 1;
  fp.spec_rev = kSpecRev;
  fp.checksum = checksum(reinterpret_cast<const uint8_t*>(&fp), sizeof(fp));

  std::vector<uint8_t> out;
  append(out, fp);
  out.insert(out.end(), table.begin(), table.end());
  auto r = mem.write(layout::kMpTableAddr, out);
  if (!r) return std::unexpected(std::move(r.error()).context("writing the MP table"));
  return {};
}

}  // namespace cairn
