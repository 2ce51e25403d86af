#include "vmm/kvm/kvm_system.hpp"

#include <fcntl.h>
#include <sys/ioctl.h>

#include <cstddef>
#include <memory>

namespace cairn {

// The C layout the kernel expects (see kvm_abi_fix.h).
static_assert(sizeof(kvm_cpuid2) == 8 && offsetof(kvm_cpuid2, entries) == 8);
static_assert(sizeof(kvm_msrs) == 8 && offsetof(kvm_msrs, entries) == 8);
static_assert(sizeof(kvm_msr_list) == 4);
static_assert(sizeof(kvm_xsave) == 4096);
static_assert(KVM_GET_SUPPORTED_CPUID == 0xc008ae05);

Result<KvmSystem> KvmSystem::open(const char* path) {
  KvmSystem k;
  k.fd_ = UniqueFd(::open(path, O_RDWR | O_CLOEXEC));
  if (!k.fd_) return fail_errno("opening {}", path);
  int version = ::ioctl(k.fd(), KVM_GET_API_VERSION, 0);
  if (version != KVM_API_VERSION)
    return fail(Errc::unsupported, "KVM API version {} (expected {})", version, KVM_API_VERSION);
  struct Cap { long cap; const char* name; };
  static constexpr Cap kNeeded[] = {
      {KVM_CAP_IRQCHIP, "IRQCHIP"},         {KVM_CAP_PIT2, "PIT2"},
      {KVM_CAP_USER_MEMORY, "USER_MEMORY"}, {KVM_CAP_IOEVENTFD, "IOEVENTFD"},
      {KVM_CAP_IRQFD, "IRQFD"},             {KVM_CAP_IMMEDIATE_EXIT, "IMMEDIATE_EXIT"},
      {KVM_CAP_SET_TSS_ADDR, "SET_TSS_ADDR"}, {KVM_CAP_EXT_CPUID, "EXT_CPUID"},
      {KVM_CAP_MP_STATE, "MP_STATE"},       {KVM_CAP_VCPU_EVENTS, "VCPU_EVENTS"},
  };
  for (auto& c : kNeeded)
    if (k.check_extension(c.cap) <= 0) return fail(Errc::unsupported, "KVM lacks KVM_CAP_{}", c.name);
  int sz = ::ioctl(k.fd(), KVM_GET_VCPU_MMAP_SIZE, 0);
  if (sz <= 0) return fail_errno("KVM_GET_VCPU_MMAP_SIZE");
  k.vcpu_mmap_size_ = static_cast<size_t>(sz);
  return k;
}

int KvmSystem::check_extension(long cap) const { return ::ioctl(fd(), KVM_CHECK_EXTENSION, cap); }

Result<std::vector<kvm_cpuid_entry2>> KvmSystem::supported_cpuid() const {
  // Grow until KVM stops answering E2BIG.
  for (uint32_t n = 128; n <= 4096; n *= 2) {
    size_t bytes = sizeof(kvm_cpuid2) + n * sizeof(kvm_cpuid_entry2);
    auto buf = std::make_unique<uint8_t[]>(bytes);
    auto* c = reinterpret_cast<kvm_cpuid2*>(buf.get());
    c->nent = n;
    if (::ioctl(fd(), KVM_GET_SUPPORTED_CPUID, c) == 0)
      return std::vector<kvm_cpuid_entry2>(c->entries, c->entries + c->nent);
    if (errno != E2BIG) return fail_errno("KVM_GET_SUPPORTED_CPUID");
  }
  return fail(Errc::failed, "KVM_GET_SUPPORTED_CPUID: too many entries");
}

Result<std::vector<uint32_t>> KvmSystem::msr_index_list() const {
  kvm_msr_list probe{};
  probe.nmsrs = 0;
  if (::ioctl(fd(), KVM_GET_MSR_INDEX_LIST, &probe) != 0 && errno != E2BIG)
    return fail_errno("KVM_GET_MSR_INDEX_LIST");
  size_t bytes = sizeof(kvm_msr_list) + probe.nmsrs * sizeof(uint32_t);
  auto buf = std::make_unique<uint8_t[]>(bytes);
  auto* l = reinterpret_cast<kvm_msr_list*>(buf.get());
  l->nmsrs = probe.nmsrs;
  if (::ioctl(fd(), KVM_GET_MSR_INDEX_LIST, l) != 0) return fail_errno("KVM_GET_MSR_INDEX_LIST");
  return std::vector<uint32_t>(l->indices, l->indices + l->nmsrs);
}

}  // namespace cairn
