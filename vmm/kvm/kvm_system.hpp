// The KVM system fd (/dev/kvm): API checks and host-wide queries.
#pragma once
#include <linux/kvm.h>

#include <cstdint>
#include <vector>

#include "vmm/base/error.hpp"
#include "vmm/base/unique_fd.hpp"

namespace cairn {

class KvmSystem {
 public:
  // Opens /dev/kvm and checks the API version and every capability cairn relies on.
  static Result<KvmSystem> open(const char* path = "/dev/kvm");

  int fd() const { return fd_.get(); }
  int check_extension(long cap) const;
  size_t vcpu_mmap_size() const { return vcpu_mmap_size_; }
  Result<std::vector<kvm_cpuid_entry2>> supported_cpuid() const;
  // The MSRs KVM can save and restore (KVM_GET_MSR_INDEX_LIST).
  Result<std::vector<uint32_t>> msr_index_list() const;

 private:
  UniqueFd fd_;
  size_t vcpu_mmap_size_ = 0;
};

}  // namespace cairn
