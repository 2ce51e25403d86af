// The CPUID table of one vCPU, derived from KVM_GET_SUPPORTED_CPUID. Topology presented: one
// package with `count` cores of one thread each; vCPU i has (x2)APIC id i.
//   leaf 1:          EBX[31:24] APIC id, EBX[23:16] addressable ids in the package, EDX[28] HTT
//                    when count > 1, ECX[31] hypervisor present
//   leaf 4:          EAX[31:26] cores per package - 1, EAX[25:14] threads sharing the cache - 1
//                    (1 for L1/L2, the whole package for L3)
//   leaf 0xb, 0x1f:  (replaced, when supported) subleaf 0 SMT level (shift 0, 1 thread),
//                    subleaf 1 core level (shift ceil(log2 count), count threads), subleaf 2
//                    invalid; EDX = x2APIC id everywhere
//   0x8000001d:      EAX[25:14] threads sharing the cache - 1, as in leaf 4
//   0x80000008:      ECX[7:0] cores - 1, ECX[15:12] APIC id bits for cores
//   0x8000001e:      EAX extended APIC id, EBX[7:0] core id, EBX[15:8] threads per core - 1
//   0x40000001:      EAX without the asynchronous page fault features (bits 4, 10, 14)
// Everything else (the 0x40000000 KVM signature leaf, leaf 6, ...) is passed through.
#pragma once
#include <linux/kvm.h>

#include <span>
#include <vector>

#include "vmm/base/error.hpp"

namespace cairn {

inline constexpr uint32_t kKvmCpuidFeatures = 0x40000001;
// KVM_FEATURE_ASYNC_PF, _ASYNC_PF_VMEXIT, _ASYNC_PF_INT (<asm/kvm_para.h>).
inline constexpr uint32_t kKvmAsyncPfFeatures = (1U << 4) | (1U << 10) | (1U << 14);

Result<std::vector<kvm_cpuid_entry2>> vcpu_cpuid(std::span<const kvm_cpuid_entry2> supported, unsigned index,
                                                 unsigned count);

}  // namespace cairn
