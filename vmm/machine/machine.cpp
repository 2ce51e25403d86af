#include "vmm/machine/machine.hpp"

#include <signal.h>

#include <cstring>

#include "devices/debug_exit.hpp"
#include "devices/i8042.hpp"
#include "devices/serial8250.hpp"
#include "devices/virtio/block.hpp"
#include "devices/virtio/mmio_transport.hpp"
#include "devices/virtio/vsock_device.hpp"
#include "snapshot/state/device_state.hpp"
#include "vmm/boot/boot.hpp"
#include "vmm/boot/cpuid.hpp"
#include "vmm/boot/layout.hpp"
#include "vmm/machine/cmdline.hpp"
#include "vmm/machine/disk_open.hpp"
#include "vmm/machine/exit_dispatch.hpp"
#include "vmm/machine/irq_lines.hpp"

namespace cairn {

namespace {
// The signal that kicks a vCPU thread out of KVM_RUN; its handler does nothing.
constexpr int kKickSignal = SIGUSR1;

void install_kick_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa {};
    sa.sa_handler = [](int) {};
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: KVM_RUN must return EINTR
    sigaction(kKickSignal, &sa, nullptr);
  });
}

}  // namespace

Result<std::unique_ptr<Machine>> Machine::create(const MachineConfig& cfg) {
  if (auto r = validate_machine_config(cfg); !r) return std::unexpected(r.error());
  auto m = std::unique_ptr<Machine>(new Machine());
  m->cfg_ = cfg;
  if (auto r = m->init_vm(); !r) return std::unexpected(r.error());
  if (auto r = m->setup_devices(); !r) return std::unexpected(r.error());
  if (auto r = m->setup_vcpus(); !r) return std::unexpected(r.error());
  return m;
}

Result<void> Machine::init_vm() {
  install_kick_handler();
  auto kvm = KvmSystem::open();
  if (!kvm) return std::unexpected(std::move(kvm.error()).context("opening KVM"));
  kvm_.emplace(std::move(*kvm));
  auto vm = VmFd::create(*kvm_);
  if (!vm) return std::unexpected(std::move(vm.error()).context("creating the VM"));
  vm_.emplace(std::move(*vm));
  auto mem = GuestMemory::create(cfg_.memory);
  if (!mem) return std::unexpected(std::move(mem.error()).context("allocating guest memory"));
  memory_ = std::move(*mem);
  return vm_->map_memory(memory_);
}

Result<void> Machine::setup_devices(const snap::DeviceStates* saved) {
  auto console = Console::open(cfg_.console);
  if (!console) return std::unexpected(console.error());
  console_ = std::move(*console);

  auto serial_irq = std::make_shared<KvmIrqLine>(*vm_, Serial8250::kCom1Irq);
  irq_lines_.push_back(serial_irq);
  Console* con = console_.get();
  Serial8250::Sink sink = [con](std::span<const uint8_t> b) { con->write(b); };
  if (saved) {
    auto s = Serial8250::restore(saved->serial, serial_irq, sink);
    if (!s) return std::unexpected(std::move(s.error()).context("restoring the serial port"));
    serial_ = std::move(*s);
  } else {
    serial_ = std::make_shared<Serial8250>(serial_irq, sink);
  }
  if (auto r = pio_.insert(Serial8250::kCom1Port, Serial8250::kLength, serial_); !r) return r;
  auto on_reset = [this] {
    if (console_->panic_seen())
      request_stop({MachineExit::Kind::crash, 0, "the guest kernel panicked"});
    else
      request_stop({MachineExit::Kind::reboot, 0, {}});
  };
  i8042_ = saved ? I8042::restore(saved->i8042, on_reset) : std::make_shared<I8042>(on_reset);
  if (auto r = pio_.insert(I8042::kBasePort, I8042::kLength, i8042_); !r) return r;
  auto exit_port = std::make_shared<DebugExit>(
      [this](int status) { request_stop({MachineExit::Kind::poweroff, status, {}}); });
  if (auto r = pio_.insert(DebugExit::kPort, DebugExit::kLength, exit_port); !r) return r;

  // virtio-mmio devices: disks first (vda, vdb, ... in order), then vsock.
  for (auto& d : cfg_.disks) {
    auto backend = open_disk(d);
    if (!backend) return std::unexpected(backend.error());
    disks_.push_back(std::move(*backend));
    blocks_.push_back(std::make_shared<VirtioBlock>(disks_.back()));
    virtio_devices_.push_back(blocks_.back());
  }
  if (cfg_.vsock) {
    VsockConfig vc;
    vc.guest_cid = cfg_.vsock->cid;
    vc.uds_path = cfg_.vsock->uds_path;
    auto dev = saved ? VsockDevice::restore(*saved->virtio.back().vsock, vc) : VsockDevice::create(vc);
    if (!dev) return std::unexpected(std::move(dev.error()).context("vsock"));
    virtio_devices_.push_back(std::shared_ptr<VirtioDevice>(std::move(*dev)));
  }
  std::vector<std::string> entries;
  for (size_t i = 0; i < virtio_devices_.size(); ++i) {
    uint32_t gsi = kFirstVirtioGsi + static_cast<uint32_t>(i);
    auto line = IrqfdLine::create(*vm_, gsi);
    if (!line) return std::unexpected(line.error());
    std::shared_ptr<InterruptLine> irq(std::move(*line));
    irq_lines_.push_back(irq);
    std::shared_ptr<MmioTransport> t;
    if (saved) {
      auto rt = MmioTransport::restore(saved->virtio[i].transport, memory_, virtio_devices_[i], irq);
      if (!rt) return std::unexpected(rt.error());
      t = std::move(*rt);
    } else {
      t = std::make_shared<MmioTransport>(memory_, virtio_devices_[i], irq);
    }
    uint64_t base = layout::virtio_mmio_addr(static_cast<unsigned>(i));
    if (auto r = mmio_.insert(base, layout::kVirtioMmioSize, t); !r) return r;
    transports_.push_back(t);
    entries.push_back(virtio_mmio_cmdline(layout::kVirtioMmioSize, base, gsi));
  }
  cmdline_ = build_kernel_cmdline(entries, cfg_.guest_command, cfg_.cmdline);
  return {};
}

Result<void> Machine::setup_vcpus(bool boot_kernel) {
  std::optional<BootResult> boot;
  if (boot_kernel) {
    auto b = prepare_boot(memory_, BootConfig{cfg_.kernel, cfg_.initrd, cmdline_, cfg_.cpus});
    if (!b) return std::unexpected(b.error());
    boot = std::move(*b);
  }
  auto supported = kvm_->supported_cpuid();
  if (!supported) return std::unexpected(supported.error());
  for (unsigned i = 0; i < cfg_.cpus; ++i) {
    auto v = VcpuFd::create(*kvm_, *vm_, i);
    if (!v) return std::unexpected(v.error());
    auto cpuid = vcpu_cpuid(*supported, i, cfg_.cpus);
    if (!cpuid) return std::unexpected(cpuid.error());
    if (auto r = v->set_cpuid(*cpuid); !r) return r;
    if (boot) {
      if (auto r = v->init_defaults(); !r) return r;
    }
    if (boot && i == 0) {
      auto cur = v->get_sregs();
      if (!cur) return std::unexpected(cur.error());
      if (auto r = v->set_sregs(boot->sregs(*cur)); !r) return r;
      if (auto r = v->set_regs(boot->regs); !r) return r;
    }
    vcpus_.push_back(std::move(*v));
  }
  return {};
}

Machine::~Machine() {
  request_stop({MachineExit::Kind::stopped, 0, {}});
  for (auto& t : threads_)
    if (t.joinable()) t.join();
}

MachineExit Machine::run() {
  if (console_) {
    auto r = console_->start_input([this](std::span<const uint8_t> b) { return serial_->enqueue_input(b); },
                                   [this] { request_stop({MachineExit::Kind::stopped, 0, "quit from the console"}); });
    if (!r) return {MachineExit::Kind::error, 0, r.error().message};
  }
  {
    // Under the lock: pause() from the control thread reads threads_.
    std::lock_guard lk(mu_);
    thread_ids_.resize(vcpus_.size());
    for (unsigned i = 0; i < vcpus_.size(); ++i) threads_.emplace_back([this, i] { vcpu_loop(i); });
  }
  std::unique_lock lk(mu_);
  cv_.wait(lk, [this] { return exit_.has_value(); });
  MachineExit e = *exit_;
  lk.unlock();
  kick_all();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  threads_.clear();
  if (console_) {
    console_->stop_input();
    console_->flush();
  }
  return e;
}

void Machine::request_stop(MachineExit exit) {
  {
    std::lock_guard lk(mu_);
    if (!exit_) exit_ = std::move(exit);
    stop_requested_ = true;
  }
  cv_.notify_all();
  kick_all();
}

void Machine::kick_all() {
  std::lock_guard lk(mu_);
  for (size_t i = 0; i < vcpus_.size(); ++i) {
    vcpus_[i].run()->immediate_exit = 1;
    if (i < thread_ids_.size() && thread_ids_[i]) pthread_kill(thread_ids_[i], kKickSignal);
  }
}

void Machine::pause() {
  std::unique_lock lk(mu_);
  if (threads_.empty()) {
    // Not started yet: the vCPUs park as soon as run() starts them.
    pause_requested_ = true;
    paused_ = true;
    return;
  }
  if (pause_requested_) {
    cv_.wait(lk, [this] { return paused_ || stop_requested_; });
    return;
  }
  pause_requested_ = true;
  lk.unlock();
  kick_all();
  lk.lock();
  cv_.wait(lk, [this] { return parked_ == vcpus_.size() || stop_requested_; });
  paused_ = true;
}

bool Machine::running_unpaused() const {
  std::lock_guard lk(mu_);
  return !threads_.empty() && !stop_requested_ && !pause_requested_;
}

void Machine::resume() {
  std::lock_guard lk(mu_);
  pause_requested_ = false;
  paused_ = false;
  cv_.notify_all();
}

void Machine::park(VcpuFd& v) {
  // Re-enter once with immediate_exit set: KVM completes a pending PIO/MMIO
  // instruction and returns EINTR without running guest code, so the saved
  // registers are consistent.
  v.run()->immediate_exit = 1;
  (void)v.enter();
  std::unique_lock lk(mu_);
  ++parked_;
  cv_.notify_all();
  cv_.wait(lk, [this] { return !pause_requested_ || stop_requested_; });
  --parked_;
  v.run()->immediate_exit = 0;
}

void Machine::vcpu_loop(unsigned index) {
  {
    std::lock_guard lk(mu_);
    thread_ids_[index] = pthread_self();
  }
  VcpuFd& v = vcpus_[index];
  while (!stop_requested_) {
    bool want_pause;
    {
      std::lock_guard lk(mu_);
      want_pause = pause_requested_;
    }
    if (want_pause) {
      park(v);
      continue;
    }
    int rc = v.enter();
    if (rc == -EINTR || rc == -EAGAIN) {
      v.run()->immediate_exit = 0;
      continue;
    }
    if (rc < 0) {
      request_stop({MachineExit::Kind::error, 0, fmt::format("KVM_RUN on vCPU {}: {}", index, std::strerror(-rc))});
      break;
    }
    kvm_run* run = v.run();
    switch (run->exit_reason) {
      case KVM_EXIT_IO: dispatch_pio(v.run(), pio_); break;
      case KVM_EXIT_MMIO: dispatch_mmio(v.run(), mmio_); break;
      case KVM_EXIT_SHUTDOWN:
        fmt::print(stderr, "cairn: vCPU {} shut down (triple fault); its registers:\n{}\n", index, v.describe());
        request_stop({MachineExit::Kind::crash, 0,
                      fmt::format("vCPU {} shut down (triple fault)", index)});
        break;
      case KVM_EXIT_SYSTEM_EVENT:
        if (run->system_event.type == KVM_SYSTEM_EVENT_RESET)
          request_stop({MachineExit::Kind::reboot, 0, {}});
        else
          request_stop({MachineExit::Kind::poweroff, 0, {}});
        break;
      case KVM_EXIT_HLT:
        request_stop({MachineExit::Kind::poweroff, 0, "vCPU halted"});
        break;
      case KVM_EXIT_INTERNAL_ERROR:
        request_stop({MachineExit::Kind::crash, 0,
                      fmt::format("KVM internal error on vCPU {} (suberror {})", index, run->internal.suberror)});
        break;
      case KVM_EXIT_FAIL_ENTRY:
        request_stop({MachineExit::Kind::crash, 0,
                      fmt::format("vCPU {} failed to enter the guest (reason {:#x})", index,
                                  static_cast<uint64_t>(run->fail_entry.hardware_entry_failure_reason))});
        break;
      default:
        request_stop({MachineExit::Kind::error, 0,
                      fmt::format("unhandled KVM exit {} on vCPU {}", run->exit_reason, index)});
    }
  }
  // kick_all() signals by thread id: a thread that has ended (and may have
  // been joined, its id reused) must not be signalled again.
  std::lock_guard lk(mu_);
  thread_ids_[index] = {};
}

}  // namespace cairn
