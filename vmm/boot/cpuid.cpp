#include "vmm/boot/cpuid.hpp"

#include <algorithm>

#include "vmm/boot/mptable.hpp"

namespace cairn {

namespace {

constexpr uint32_t kEcxHypervisor = 1U << 31;
constexpr uint32_t kEdxHtt = 1U << 28;
constexpr uint32_t kLevelSmt = 1, kLevelCore = 2;

unsigned bits_for(unsigned n) {  // ceil(log2 n)
  unsigned b = 0;
  while ((1U << b) < n) ++b;
  return b;
}

kvm_cpuid_entry2 topology_entry(uint32_t function, uint32_t sub, uint32_t shift, uint32_t threads, uint32_t type,
                                uint32_t x2apic_id) {
  kvm_cpuid_entry2 e{};
  e.function = function;
  e.index = sub;
  e.flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
  e.eax = shift;
  e.ebx = threads;
  e.ecx = (type << 8) | sub;
  e.edx = x2apic_id;
  return e;
}

}  // namespace

Result<std::vector<kvm_cpuid_entry2>> vcpu_cpuid(std::span<const kvm_cpuid_entry2> supported, unsigned index,
                                                 unsigned count) {
  if (count == 0 || count > kMaxVcpus)
    return fail(Errc::invalid_argument, "{} vCPUs requested; between 1 and {} are supported", count, kMaxVcpus);
  if (index >= count) return fail(Errc::invalid_argument, "vCPU index {} out of range for {} vCPUs", index, count);

  const unsigned shift = bits_for(count);
  const uint32_t apic_id = index;
  std::vector<kvm_cpuid_entry2> out;
  bool has_0b = false, has_1f = false;
  for (auto e : supported) {
    switch (e.function) {
      case 0x1:
        e.ebx = (e.ebx & 0xffff) | (apic_id << 24) | ((1U << shift) << 16);
        e.ecx |= kEcxHypervisor;
        e.edx = count > 1 ? (e.edx | kEdxHtt) : (e.edx & ~kEdxHtt);
        break;
      case 0x4:
        if ((e.eax & 0x1f) != 0) {  // a cache is described (type 0 ends the list)
          uint32_t level = (e.eax >> 5) & 7;
          uint32_t sharing = level >= 3 ? (1U << shift) : 1;
          e.eax = (e.eax & 0x3fff) | (((1U << shift) - 1) << 26) | ((sharing - 1) << 14);
        }
        break;
      case 0xb:
        has_0b = true;
        continue;
      case 0x1f:
        has_1f = true;
        continue;
      case kKvmCpuidFeatures:
        // No asynchronous page faults: a checkpoint taken while KVM still
        // owes the guest a "page ready" cannot carry it (KVM keeps it where
        // no ioctl reaches), and the guest task waiting for it would wait
        // forever after a restore. Lazy restore faults then block the vCPU.
        e.eax &= ~kKvmAsyncPfFeatures;
        break;
      case 0x8000001d:  // AMD cache topology: EAX[25:14] as in leaf 4, no core count field
        if ((e.eax & 0x1f) != 0) {
          uint32_t level = (e.eax >> 5) & 7;
          uint32_t sharing = level >= 3 ? (1U << shift) : 1;
          e.eax = (e.eax & ~(0xfffU << 14)) | ((sharing - 1) << 14);
        }
        break;
      case 0x80000008:
        e.ecx = (e.ecx & ~0xf0ffU) | (count - 1) | (shift << 12);
        break;
      case 0x8000001e:
        e.eax = apic_id;
        e.ebx = (e.ebx & ~0xffffU) | index;  // 1 thread per core: bits 15-8 stay 0
        break;
      default:
        break;
    }
    out.push_back(e);
  }
  for (uint32_t fn : {0xbU, 0x1fU}) {
    if ((fn == 0xb && !has_0b) || (fn == 0x1f && !has_1f)) continue;
    out.push_back(topology_entry(fn, 0, 0, 1, kLevelSmt, apic_id));
    out.push_back(topology_entry(fn, 1, shift, count, kLevelCore, apic_id));
    out.push_back(topology_entry(fn, 2, 0, 0, 0, apic_id));
  }
  return out;
}

}  // namespace cairn
