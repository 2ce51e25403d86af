// Routing a vCPU's port I/O and MMIO exits to the buses: shared by the
// Machine's vCPU loop and the KVM payload test, so the test runs the same code.
#pragma once
#include <linux/kvm.h>

#include "devices/bus.hpp"

namespace cairn {

// KVM_EXIT_IO: every element of a (possibly repeated, `rep outsb`) access.
// A read that no device holds floats high (all ones), as on a PC.
void dispatch_pio(kvm_run* run, const Bus& pio);
// KVM_EXIT_MMIO: one access of at most 8 bytes.
void dispatch_mmio(kvm_run* run, const Bus& mmio);

}  // namespace cairn
