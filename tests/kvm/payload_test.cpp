// KVM plumbing with a tiny hand-assembled real-mode guest (as KVM's own
// selftests do): the KVM wrappers, the exit dispatch the Machine uses, the
// PIO and MMIO buses and an ioeventfd, on a real /dev/kvm. Needs hardware
// virtualization (the test host, or a machine with VT-x/AMD-V): it runs as the
// integration test kvm_payload, not with the unit tests.
#include <sys/eventfd.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <mutex>
#include <vector>

#include "devices/bus.hpp"
#include "vmm/base/guest_memory.hpp"
#include "vmm/base/unique_fd.hpp"
#include "vmm/kvm/kvm_system.hpp"
#include "vmm/kvm/vcpu_fd.hpp"
#include "vmm/kvm/vm_fd.hpp"
#include "vmm/machine/exit_dispatch.hpp"

using namespace cairn;

namespace {

// Records every access and answers reads with a fixed pattern.
class Recorder : public BusDevice {
 public:
  struct Access {
    bool write;
    uint64_t offset;
    std::vector<uint8_t> data;
  };
  explicit Recorder(std::vector<uint8_t> answer) : answer_(std::move(answer)) {}
  std::string_view name() const override { return "recorder"; }
  void read(uint64_t offset, std::span<uint8_t> data) override {
    for (size_t i = 0; i < data.size(); ++i) data[i] = answer_[(offset + i) % answer_.size()];
    log.push_back({false, offset, {data.begin(), data.end()}});
  }
  void write(uint64_t offset, std::span<const uint8_t> data) override {
    log.push_back({true, offset, {data.begin(), data.end()}});
  }
  std::vector<Access> log;

 private:
  std::vector<uint8_t> answer_;
};

constexpr uint64_t kCodeAddr = 0x1000;
constexpr uint64_t kMmioBase = 0xd0000;  // above the 64 KiB of RAM, below 1 MiB
constexpr uint16_t kDonePort = 0xe4;

// Real mode, CS = DS = 0 until DS is loaded with 0xd000 (through BX: AL holds the port's answer).
const uint8_t kPayload[] = {
    0xba, 0xe0, 0x00,  // mov dx, 0xe0
    0xb0, 0x42,        // mov al, 0x42
    0xee,              // out dx, al        -> PIO write 0x42 at port 0xe0
    0xec,              // in al, dx         -> PIO read at 0xe0 (device answers 0x17)
    0xbb, 0x00, 0xd0,  // mov bx, 0xd000
    0x8e, 0xdb,        // mov ds, bx
    0xa2, 0x00, 0x00,  // mov [0x0000], al  -> MMIO write of 0x17 at 0xd0000
    0xa1, 0x04, 0x00,  // mov ax, [0x0004]  -> MMIO read of 2 bytes at 0xd0004
    0xba, 0xe1, 0x00,  // mov dx, 0xe1
    0xef,              // out dx, ax        -> PIO write of what MMIO gave
    0xba, 0xf0, 0x00,  // mov dx, 0xf0
    0xec,              // in al, dx         -> no device: floats high (0xff)
    0xba, 0xe2, 0x00,  // mov dx, 0xe2
    0xee,              // out dx, al        -> PIO write of 0xff
    0xba, 0xe3, 0x00,  // mov dx, 0xe3
    0xee,              // out dx, al        -> ioeventfd: no exit at all
    0xba, kDonePort, 0x00,  // mov dx, 0xe4
    0xee,              // out dx, al        -> done
    0xf4,              // hlt (never reached: the loop stops at the done port)
};

}  // namespace

TEST_CASE("a real-mode payload's port I/O and MMIO reach the buses", "[kvm]") {
  auto kvm = KvmSystem::open();
  REQUIRE(kvm);
  auto vm = VmFd::create(*kvm);
  REQUIRE(vm);
  auto mem = GuestMemory::create_anonymous(0, 0x10000);
  REQUIRE(mem);
  REQUIRE(mem->write(kCodeAddr, std::span(kPayload)));
  REQUIRE(vm->map_memory(*mem));
  auto vcpu = VcpuFd::create(*kvm, *vm, 0);
  REQUIRE(vcpu);

  auto sregs = vcpu->get_sregs();
  REQUIRE(sregs);
  sregs->cs.base = 0;
  sregs->cs.selector = 0;
  sregs->ds.base = 0;
  sregs->ds.selector = 0;
  REQUIRE(vcpu->set_sregs(*sregs));
  kvm_regs regs{};
  regs.rip = kCodeAddr;
  regs.rflags = 0x2;
  REQUIRE(vcpu->set_regs(regs));

  Bus pio, mmio;
  auto port_dev = std::make_shared<Recorder>(std::vector<uint8_t>{0x17});
  auto done_dev = std::make_shared<Recorder>(std::vector<uint8_t>{0});
  auto mmio_dev = std::make_shared<Recorder>(std::vector<uint8_t>{0, 0, 0, 0, 0xef, 0xbe, 0, 0});
  REQUIRE(pio.insert(0xe0, 3, port_dev));
  REQUIRE(pio.insert(kDonePort, 1, done_dev));
  REQUIRE(mmio.insert(kMmioBase, 0x1000, mmio_dev));
  UniqueFd ev(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  REQUIRE(ev);
  REQUIRE(vm->register_ioeventfd(ev.get(), 0xe3, 1, /*pio=*/true));

  std::vector<uint32_t> exits;
  for (int i = 0; i < 64 && done_dev->log.empty(); ++i) {
    int rc = vcpu->enter();
    if (rc == -EINTR || rc == -EAGAIN) continue;
    REQUIRE(rc == 0);
    kvm_run* run = vcpu->run();
    exits.push_back(run->exit_reason);
    if (run->exit_reason == KVM_EXIT_IO) {
      INFO("port " << run->io.port);
      CHECK(run->io.port != 0xe3);  // the ioeventfd takes it in the kernel
      dispatch_pio(run, pio);
    } else if (run->exit_reason == KVM_EXIT_MMIO) {
      dispatch_mmio(run, mmio);
    } else {
      FAIL("unexpected exit " << run->exit_reason << "\n" << vcpu->describe());
    }
  }
  REQUIRE(done_dev->log.size() == 1);

  // Port 0xe0: the write of 0x42, then the read; 0xe1: the MMIO word; 0xe2: 0xff.
  REQUIRE(port_dev->log.size() == 4);
  CHECK(port_dev->log[0].write);
  CHECK(port_dev->log[0].offset == 0);
  CHECK(port_dev->log[0].data == std::vector<uint8_t>{0x42});
  CHECK_FALSE(port_dev->log[1].write);
  CHECK(port_dev->log[2].offset == 1);
  CHECK(port_dev->log[2].data == std::vector<uint8_t>{0xef, 0xbe});
  CHECK(port_dev->log[3].offset == 2);
  CHECK(port_dev->log[3].data == std::vector<uint8_t>{0xff});

  REQUIRE(mmio_dev->log.size() == 2);
  CHECK(mmio_dev->log[0].write);
  CHECK(mmio_dev->log[0].offset == 0);
  CHECK(mmio_dev->log[0].data == std::vector<uint8_t>{0x17});
  CHECK_FALSE(mmio_dev->log[1].write);
  CHECK(mmio_dev->log[1].offset == 4);
  CHECK(mmio_dev->log[1].data.size() == 2);

  uint64_t count = 0;
  REQUIRE(::read(ev.get(), &count, sizeof(count)) == sizeof(count));
  CHECK(count == 1);

  auto after = vcpu->get_regs();
  REQUIRE(after);
  CHECK((after->rax & 0xff) == 0xff);
}
