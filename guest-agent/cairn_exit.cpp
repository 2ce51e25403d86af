// cairn-exit STATUS: ends the VM from inside the guest with an exit status.
// Writes STATUS to I/O port 0x501, cairn's debug-exit device (QEMU's
// isa-debug-exit at the same port exits with 2*STATUS+1). Without ACPI a Linux
// guest cannot power itself off, so the default guest's init and poweroff use this.
#include <sys/io.h>
#include <sys/reboot.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: cairn-exit STATUS (0-255)\n");
    return 2;
  }
  char* end = nullptr;
  long status = std::strtol(argv[1], &end, 10);
  if (*argv[1] == '\0' || *end != '\0' || status < 0 || status > 255) {
    std::fprintf(stderr, "cairn-exit: status must be a number from 0 to 255\n");
    return 2;
  }
  ::sync();
  constexpr unsigned short kPort = 0x501;
  if (::ioperm(kPort, 1, 1) != 0) {
    std::perror("cairn-exit: ioperm");
    return 1;
  }
  outb(static_cast<unsigned char>(status), kPort);
  // Only reached when no debug-exit device listens: fall back to a plain power-off.
  ::reboot(RB_POWER_OFF);
  return 1;
}
