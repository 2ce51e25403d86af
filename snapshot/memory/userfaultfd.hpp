// userfaultfd for guest memory, shared by lazy restore (missing pages) and
// copy-on-write checkpoints (write protection).
#pragma once
#include <linux/userfaultfd.h>

#include <cstdint>
#include <functional>

#include "vmm/base/error.hpp"
#include "vmm/base/unique_fd.hpp"

namespace cairn::snap {

// A non-blocking userfaultfd that also sees faults taken inside the kernel
// (KVM touching guest memory for a vCPU), handshaken with UFFDIO_API. The
// kernel's feature bits land in `features`. Errc::unsupported when the host
// refuses userfaultfd (not root and vm.unprivileged_userfaultfd=0).
Result<UniqueFd> open_userfaultfd(uint64_t& features);

// Registers [host, host + size) with `mode` (UFFDIO_REGISTER_MODE_*); Errc::unsupported
// when the kernel refuses it for this memory or lacks one of `ioctls` on it.
Result<void> register_range(int uffd, uint8_t* host, uint64_t size, uint64_t mode, uint64_t ioctls);

// Reads fault messages from `uffd` and passes each page fault to `on_fault`
// until `stop_fd` (an eventfd) becomes readable or the fd fails.
void serve_faults(int uffd, int stop_fd, const std::function<void(const uffd_msg&)>& on_fault);

}  // namespace cairn::snap
