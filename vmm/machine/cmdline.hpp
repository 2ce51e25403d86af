// The kernel command line cairn gives a guest.
#pragma once
#include <string>
#include <vector>

namespace cairn {

// Console on the 8250, reset through the i8042, no PCI/ACPI probing, panic ->
// reboot, virtio-mmio device entries, the guest command (if any) and the user's extra arguments.
std::string build_kernel_cmdline(const std::vector<std::string>& virtio_entries,
                                 const std::vector<std::string>& guest_command, const std::string& extra);

// The guest command joined with spaces (as ssh does), base64 for the kernel command line.
std::string encode_guest_command(const std::vector<std::string>& args);

}  // namespace cairn
