// Round trip of standard checkpoints on the default Linux guest (2 vCPUs,
// 128 MiB, counting on its console): checkpoint A of the paused guest,
// restored into a machine whose vCPUs never run and saved again as B, must
// hold the same vCPU, VM and device state and the same RAM; the restored
// guest then goes on counting; and a chain of 20 checkpoints, each restored
// from the one before, counts on from each link's count while the process
// leaks neither fds nor guest memory. Needs /dev/kvm
// and the default guest's images ($CAIRN_IMAGES): it runs as the integration
// test kvm_roundtrip, not with the unit tests.
#include <sys/mman.h>

#include <catch2/catch.hpp>
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "snapshot/memory/file_io.hpp"
#include "snapshot/memory/memory_image.hpp"
#include "snapshot/state/container.hpp"
#include "snapshot/state/device_state.hpp"
#include "snapshot/state/machine_state.hpp"
#include "snapshot/state/state_report.hpp"
#include "tests/unit/vmm/temp_dir.hpp"
#include "vmm/base/mapping.hpp"
#include "vmm/machine/machine.hpp"

using namespace cairn;
using cairn::test::TempDir;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

// The counter of checkpoint_basic.sh: "count N" five times a second.
constexpr const char* kCounter = "i=0; while true; do i=$((i+1)); echo count $i; sleep 0.2; done";
constexpr uint64_t kGuestMemory = 128ULL << 20;
constexpr unsigned kGuestCpus = 2;
// 20 links, or $CAIRN_ROUNDTRIP_CYCLES (more, to hunt a rare failure).
int chain_cycles() {
  const char* v = std::getenv("CAIRN_ROUNDTRIP_CYCLES");
  return v && std::atoi(v) > 0 ? std::atoi(v) : 20;
}

// MSRs the checks below name or treat specially (numbers from Linux's
// msr-index.h, kvm_para.h and hyperv-tlfs.h).
constexpr uint32_t kMsrTscAdjust = 0x3b;
constexpr uint32_t kMsrKvmWallClock = 0x11;
constexpr uint32_t kMsrKvmSystemTime = 0x12;
constexpr uint32_t kMsrKvmWallClockNew = 0x4b564d00;
constexpr uint32_t kMsrKvmSystemTimeNew = 0x4b564d01;
constexpr uint32_t kMsrHvVpRuntime = 0x40000010;
constexpr uint32_t kMsrHvTimeRefCount = 0x40000020;
// Offset of the LAPIC timer's current-count register: it counts down in real time.
constexpr size_t kLapicTimerCurrentCount = 0x390;
// struct pvclock_wall_clock: u32 version, u32 sec, u32 nsec.
constexpr uint64_t kPvclockWallClockSize = 12;

template <class T>
T value_of(Result<T> r, std::string_view what) {
  if (!r) FAIL(what << ": " << r.error().message);
  return std::move(*r);
}
template <class T>
void require_ok(const Result<T>& r, std::string_view what) {
  if (!r) FAIL(what << ": " << r.error().message);
}

// The default guest, found as `cairn run` finds it: through $CAIRN_IMAGES.
MachineConfig guest_config(const std::string& console_log) {
  const char* images = std::getenv("CAIRN_IMAGES");
  if (!images || !*images) FAIL("CAIRN_IMAGES must name the folder holding the default guest's images");
  MachineConfig c;
  c.kernel = std::string(images) + "/vmlinux";
  c.initrd = std::string(images) + "/initramfs.cpio.gz";
  c.memory = kGuestMemory;
  c.cpus = kGuestCpus;
  c.console = "file:" + console_log;
  // `cairn run -- CMD` passes CMD as one word; the guest's init runs it with sh -c.
  c.guest_command = {kCounter};
  return c;
}

// What `cairn run --restore` hands Machine::restore: the same machine, no
// command (the restored guest goes on with the one it runs).
MachineConfig restore_config(MachineConfig c, const std::string& console_log) {
  c.console = "file:" + console_log;
  c.guest_command.clear();
  return c;
}

std::string describe(const MachineExit& e) {
  switch (e.kind) {
    case MachineExit::Kind::poweroff: return fmt::format("powered off with status {}", e.status);
    case MachineExit::Kind::reboot: return "rebooted";
    case MachineExit::Kind::crash: return "crashed: " + e.detail;
    case MachineExit::Kind::stopped: return "stopped";
    case MachineExit::Kind::error: return "failed: " + e.detail;
  }
  return "ended";
}

// Machine::run() on a thread of its own (`cairn run` calls it on the main
// one); stop() ends it the way a signal ends `cairn run`.
class RunningMachine {
 public:
  explicit RunningMachine(Machine& m) : m_(m), thread_([this] {
    exit_ = m_.run();
    ended_ = true;
  }) {}
  ~RunningMachine() { (void)stop(); }
  RunningMachine(const RunningMachine&) = delete;
  RunningMachine& operator=(const RunningMachine&) = delete;

  // The guest (or an error) ended the run on its own.
  bool ended() const { return ended_; }
  std::string state() const { return ended_ ? describe(exit_) : "running"; }
  MachineExit stop() {
    m_.request_stop({MachineExit::Kind::stopped, 0, {}});
    if (thread_.joinable()) thread_.join();
    return exit_;
  }

 private:
  Machine& m_;
  MachineExit exit_;
  std::atomic<bool> ended_{false};
  std::thread thread_;  // last: starts once the members above exist
};

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

std::string tail(const std::string& text, size_t n = 1500) {
  return text.size() > n ? text.substr(text.size() - n) : text;
}

// The numbers of the complete "count N" lines of a console log; a line the
// pause cut short is left out (its end is in the restored guest's log).
std::vector<uint64_t> counts(const std::string& log) {
  std::vector<uint64_t> out;
  size_t start = 0;
  for (size_t nl; (nl = log.find('\n', start)) != std::string::npos; start = nl + 1) {
    std::string_view line(log.data() + start, nl - start);
    if (line.ends_with('\r')) line.remove_suffix(1);
    if (!line.starts_with("count ")) continue;
    line.remove_prefix(6);
    uint64_t n = 0;
    auto [end, ec] = std::from_chars(line.data(), line.data() + line.size(), n);
    if (ec == std::errc() && end == line.data() + line.size()) out.push_back(n);
  }
  return out;
}

// Polls `done` every 100 ms for up to `limit`; gives up early when the run ends.
template <class F>
bool wait_for(std::chrono::seconds limit, const RunningMachine& run, F done) {
  const auto end = Clock::now() + limit;
  while (!done()) {
    if (run.ended() || Clock::now() >= end) return done();
    std::this_thread::sleep_for(100ms);
  }
  return true;
}

snap::MachineState load_state(const std::string& dir) {
  const std::string path = dir + "/state.bin";
  auto bytes = value_of(snap::read_small_file(path, snap::kStateMaxFileBytes), "reading " + path);
  return value_of(snap::decode_machine_state(bytes, path), "decoding " + path);
}

// Where a guest that stopped making progress stands: each vCPU's place, its
// interrupt and timer state, and the UART's, from a checkpoint of the paused
// machine. Printed when a check that the guest goes on fails.
std::string progress_report(Machine& m, const std::string& dir) {
  m.pause();
  if (auto r = m.save_checkpoint(dir); !r) return "(no report: " + r.error().message + ")";
  return snap::describe_machine_state(load_state(dir));
}

// Fails the test when the guest did not go on; a machine that still runs is
// reported (progress_report) along with what the caller's INFO says.
void require_went_on(bool went_on, const RunningMachine& run, Machine& m, const std::string& report_dir) {
  if (went_on) return;
  INFO((run.ended() ? std::string("(the machine has ended)") : progress_report(m, report_dir)));
  REQUIRE(went_on);
}

// --- Byte-wise comparison that names what differs -------------------------

// A named byte range of a saved struct, for reports.
struct Field {
  const char* name;
  size_t offset;
  size_t size;
};
#define CAIRN_FIELD(T, m) Field{#m, offsetof(T, m), sizeof(T::m)}

template <class T>
std::span<const uint8_t> bytes_of(const T& v) {
  return {reinterpret_cast<const uint8_t*>(&v), sizeof(T)};
}

std::string hex(std::span<const uint8_t> b, size_t from, size_t to) {
  std::string s;
  for (size_t i = from; i < to; ++i) s += fmt::format("{}{:02x}", i == from ? "" : " ", b[i]);
  return s;
}

// "cr3 (byte 0x50, +0x0 in the field): A has [..], B has [..] from 0x50".
std::string describe_difference(std::span<const uint8_t> a, std::span<const uint8_t> b, size_t off,
                                std::span<const Field> fields) {
  std::string where = fmt::format("byte {:#x}", off);
  size_t lo = off & ~size_t{7};
  size_t hi = std::min(lo + 8, a.size());
  for (const auto& f : fields) {
    if (off < f.offset || off >= f.offset + f.size) continue;
    where = fmt::format("{} (byte {:#x}, +{:#x} in the field)", f.name, off, off - f.offset);
    lo = std::max(lo, f.offset);
    hi = std::min(hi, f.offset + f.size);
    break;
  }
  return fmt::format("{}: A has [{}], B has [{}] from byte {:#x}", where, hex(a, lo, hi), hex(b, lo, hi), lo);
}

// CHECKs that a and b are byte-identical in [from, to); a mismatch names
// `what` and the field holding the first differing byte.
void check_same_bytes(const std::string& what, std::span<const uint8_t> a, std::span<const uint8_t> b,
                      std::span<const Field> fields = {}, size_t from = 0, size_t to = SIZE_MAX) {
  if (a.size() != b.size()) {
    FAIL_CHECK(what << ": " << a.size() << " bytes in A, " << b.size() << " in B");
    return;
  }
  to = std::min(to, a.size());
  for (size_t i = from; i < to; ++i)
    if (a[i] != b[i]) {
      FAIL_CHECK(what << " differs at " << describe_difference(a, b, i, fields));
      return;
    }
}

const Field kRegsFields[] = {
    CAIRN_FIELD(kvm_regs, rax), CAIRN_FIELD(kvm_regs, rbx), CAIRN_FIELD(kvm_regs, rcx),
    CAIRN_FIELD(kvm_regs, rdx), CAIRN_FIELD(kvm_regs, rsi), CAIRN_FIELD(kvm_regs, rdi),
    CAIRN_FIELD(kvm_regs, rsp), CAIRN_FIELD(kvm_regs, rbp), CAIRN_FIELD(kvm_regs, r8),
    CAIRN_FIELD(kvm_regs, r9),  CAIRN_FIELD(kvm_regs, r10), CAIRN_FIELD(kvm_regs, r11),
    CAIRN_FIELD(kvm_regs, r12), CAIRN_FIELD(kvm_regs, r13), CAIRN_FIELD(kvm_regs, r14),
    CAIRN_FIELD(kvm_regs, r15), CAIRN_FIELD(kvm_regs, rip), CAIRN_FIELD(kvm_regs, rflags),
};
const Field kSregsFields[] = {
    CAIRN_FIELD(kvm_sregs, cs),   CAIRN_FIELD(kvm_sregs, ds),        CAIRN_FIELD(kvm_sregs, es),
    CAIRN_FIELD(kvm_sregs, fs),   CAIRN_FIELD(kvm_sregs, gs),        CAIRN_FIELD(kvm_sregs, ss),
    CAIRN_FIELD(kvm_sregs, tr),   CAIRN_FIELD(kvm_sregs, ldt),       CAIRN_FIELD(kvm_sregs, gdt),
    CAIRN_FIELD(kvm_sregs, idt),  CAIRN_FIELD(kvm_sregs, cr0),       CAIRN_FIELD(kvm_sregs, cr2),
    CAIRN_FIELD(kvm_sregs, cr3),  CAIRN_FIELD(kvm_sregs, cr4),       CAIRN_FIELD(kvm_sregs, cr8),
    CAIRN_FIELD(kvm_sregs, efer), CAIRN_FIELD(kvm_sregs, apic_base), CAIRN_FIELD(kvm_sregs, interrupt_bitmap),
};
const Field kEventsFields[] = {
    CAIRN_FIELD(kvm_vcpu_events, exception),   CAIRN_FIELD(kvm_vcpu_events, interrupt),
    CAIRN_FIELD(kvm_vcpu_events, nmi),         CAIRN_FIELD(kvm_vcpu_events, sipi_vector),
    CAIRN_FIELD(kvm_vcpu_events, flags),       CAIRN_FIELD(kvm_vcpu_events, smi),
    CAIRN_FIELD(kvm_vcpu_events, exception_has_payload), CAIRN_FIELD(kvm_vcpu_events, exception_payload),
};
const Field kDebugregsFields[] = {
    CAIRN_FIELD(kvm_debugregs, db), CAIRN_FIELD(kvm_debugregs, dr6), CAIRN_FIELD(kvm_debugregs, dr7),
    CAIRN_FIELD(kvm_debugregs, flags),
};
const Field kXcrsFields[] = {
    CAIRN_FIELD(kvm_xcrs, nr_xcrs), CAIRN_FIELD(kvm_xcrs, flags), CAIRN_FIELD(kvm_xcrs, xcrs),
};
// Local APIC registers: 16-byte slots (the 256-bit ones are 8 slots).
const Field kLapicFields[] = {
    {"ID", 0x20, 16},         {"version", 0x30, 16},      {"TPR", 0x80, 16},        {"APR", 0x90, 16},
    {"PPR", 0xa0, 16},        {"LDR", 0xd0, 16},          {"DFR", 0xe0, 16},        {"SVR", 0xf0, 16},
    {"ISR", 0x100, 0x80},     {"TMR", 0x180, 0x80},       {"IRR", 0x200, 0x80},     {"ESR", 0x280, 16},
    {"ICR low", 0x300, 16},   {"ICR high", 0x310, 16},    {"LVT timer", 0x320, 16}, {"LVT thermal", 0x330, 16},
    {"LVT perf", 0x340, 16},  {"LVT LINT0", 0x350, 16},   {"LVT LINT1", 0x360, 16}, {"LVT error", 0x370, 16},
    {"timer initial count", 0x380, 16}, {"timer current count", 0x390, 16}, {"timer divide", 0x3e0, 16},
};
#define CAIRN_PIC_FIELD(m) \
  Field{#m, offsetof(kvm_irqchip, chip) + offsetof(kvm_pic_state, m), sizeof(kvm_pic_state::m)}
const Field kPicFields[] = {
    CAIRN_FIELD(kvm_irqchip, chip_id),     CAIRN_PIC_FIELD(last_irr),       CAIRN_PIC_FIELD(irr),
    CAIRN_PIC_FIELD(imr),                  CAIRN_PIC_FIELD(isr),            CAIRN_PIC_FIELD(priority_add),
    CAIRN_PIC_FIELD(irq_base),             CAIRN_PIC_FIELD(read_reg_select), CAIRN_PIC_FIELD(poll),
    CAIRN_PIC_FIELD(special_mask),         CAIRN_PIC_FIELD(init_state),     CAIRN_PIC_FIELD(auto_eoi),
    CAIRN_PIC_FIELD(rotate_on_auto_eoi),   CAIRN_PIC_FIELD(special_fully_nested_mode),
    CAIRN_PIC_FIELD(init4),                CAIRN_PIC_FIELD(elcr),           CAIRN_PIC_FIELD(elcr_mask),
};
#define CAIRN_IOAPIC_FIELD(m) \
  Field{#m, offsetof(kvm_irqchip, chip) + offsetof(kvm_ioapic_state, m), sizeof(kvm_ioapic_state::m)}
const Field kIoapicFields[] = {
    CAIRN_FIELD(kvm_irqchip, chip_id), CAIRN_IOAPIC_FIELD(base_address), CAIRN_IOAPIC_FIELD(ioregsel),
    CAIRN_IOAPIC_FIELD(id),            CAIRN_IOAPIC_FIELD(irr),          CAIRN_IOAPIC_FIELD(redirtbl),
};

template <class T>
void check_same_struct(const std::string& what, const T& a, const T& b, std::span<const Field> fields) {
  check_same_bytes(what, bytes_of(a), bytes_of(b), fields);
}

// --- The saved state, A against B -----------------------------------------

std::string msr_name(uint32_t index) {
  std::string_view name;
  switch (index) {
    case snap::kMsrIa32Tsc: name = "IA32_TSC"; break;
    case kMsrTscAdjust: name = "IA32_TSC_ADJUST"; break;
    case snap::kMsrIa32TscDeadline: name = "IA32_TSC_DEADLINE"; break;
    case kMsrKvmWallClock: name = "KVM_WALL_CLOCK"; break;
    case kMsrKvmSystemTime: name = "KVM_SYSTEM_TIME"; break;
    case kMsrKvmWallClockNew: name = "KVM_WALL_CLOCK_NEW"; break;
    case kMsrKvmSystemTimeNew: name = "KVM_SYSTEM_TIME_NEW"; break;
    case kMsrHvVpRuntime: name = "HV_X64_VP_RUNTIME"; break;
    case kMsrHvTimeRefCount: name = "HV_X64_TIME_REF_COUNT"; break;
    default: return fmt::format("MSR {:#x}", index);
  }
  return fmt::format("MSR {:#x} ({})", index, name);
}

// How fast an MSR that is a clock counts, per nanosecond; 0 for the others.
// Everything else must come back exactly as saved: TSC_ADJUST (KVM keeps it
// apart from the TSC a restore writes), the TSC deadline (a guest TSC value,
// not a duration), kvmclock's MSRs (guest addresses).
double clock_msr_rate(uint32_t index, uint32_t tsc_khz) {
  switch (index) {
    case snap::kMsrIa32Tsc: return tsc_khz / 1e6;
    // Hyper-V's partition reference counter is kvmclock in 100 ns units.
    case kMsrHvTimeRefCount: return 0.01;
    // The run time KVM reports is the CPU time of the thread reading it, in
    // 100 ns units; the restore writes an offset to it. The test's thread
    // saves both checkpoints and restores.
    case kMsrHvVpRuntime: return 0.01;
    default: return 0;
  }
}

// The clocks kept counting from the saved values, which B's restore wrote,
// until B's capture: never later than the wall time between the two saves. A
// vCPU's value may also come back a little earlier: KVM puts vCPU TSCs
// written within a second of each other on the first one's timeline (the
// guest's TSCs stay in sync), and A captured each vCPU a little after the
// one before.
constexpr double kClockSlackNs = 1e9;
constexpr double kElapsedMarginNs = 50e6;

void check_msrs(unsigned cpu, const snap::VcpuState& a, const snap::VcpuState& b, double elapsed_ns) {
  std::vector<uint32_t> ia, ib;
  for (const auto& m : a.msrs) ia.push_back(m.index);
  for (const auto& m : b.msrs) ib.push_back(m.index);
  CHECK(ia == ib);  // the same MSRs, in the same order
  if (ia != ib) return;
  auto tsc_of = [](const snap::VcpuState& v) -> uint64_t {
    for (const auto& m : v.msrs)
      if (m.index == snap::kMsrIa32Tsc) return m.data;
    return uint64_t{0};
  };
  for (size_t i = 0; i < a.msrs.size(); ++i) {
    const uint64_t va = a.msrs[i].data, vb = b.msrs[i].data;
    const std::string what = fmt::format("vCPU {} {}: {:#x} in A, {:#x} in B", cpu, msr_name(ia[i]), va, vb);
    // A timer A saved as due at once (snap::keep_expired_timer) fired in B's
    // restore, before B was saved: B saves it as due at once too.
    if (ia[i] == snap::kMsrIa32TscDeadline && va != 0 && va == tsc_of(a)) {
      INFO(what);
      CHECK(vb == tsc_of(b));
      continue;
    }
    // cairn's CPUID offers no asynchronous page faults, so the guest never
    // enables them (and a restore turns them off: snap::restore_vcpu).
    if (ia[i] == snap::kMsrKvmAsyncPfEn) {
      INFO(what);
      CHECK(va == 0);
      CHECK(vb == 0);
      continue;
    }
    if (double rate = clock_msr_rate(ia[i], a.tsc_khz); rate > 0) {
      const double delta = static_cast<double>(static_cast<int64_t>(vb - va));
      INFO(what << fmt::format(" (a clock: {:.0f} ns between the saves, {} per ns)", elapsed_ns, rate));
      CHECK(delta >= -kClockSlackNs * rate);
      CHECK(delta <= (elapsed_ns + kElapsedMarginNs) * rate);
    } else if (va != vb) {
      FAIL_CHECK(what);
    }
  }
}

void check_vcpu(unsigned cpu, const snap::VcpuState& a, const snap::VcpuState& b, double elapsed_ns) {
  INFO("vCPU " << cpu);
  const std::string v = fmt::format("vCPU {} ", cpu);
  CHECK(a.mp_state.mp_state == b.mp_state.mp_state);
  CHECK(a.tsc_khz == b.tsc_khz);
  check_same_struct(v + "regs", a.regs, b.regs, kRegsFields);
  check_same_struct(v + "sregs", a.sregs, b.sregs, kSregsFields);
  check_same_struct(v + "xcrs", a.xcrs, b.xcrs, kXcrsFields);
  check_same_struct(v + "debugregs", a.debugregs, b.debugregs, kDebugregsFields);
  check_same_struct(v + "vcpu_events", a.events, b.events, kEventsFields);
  const Field xsave_fields[] = {
      {"legacy x87/SSE area", 0, 512}, {"XSAVE header", 512, 64}, {"extended state", 576, a.xsave.size()}};
  check_same_bytes(v + "xsave", a.xsave, b.xsave, xsave_fields);
  // Every LAPIC register but the timer's current count, which counts down in real time.
  const auto la = bytes_of(a.lapic.regs), lb = bytes_of(b.lapic.regs);
  check_same_bytes(v + "lapic", la, lb, kLapicFields, 0, kLapicTimerCurrentCount);
  check_same_bytes(v + "lapic", la, lb, kLapicFields, kLapicTimerCurrentCount + 4);
  check_msrs(cpu, a, b, elapsed_ns);
}

#define CAIRN_CHECK_SAME(a, b, m) CHECK(static_cast<uint64_t>((a).m) == static_cast<uint64_t>((b).m))

void check_vm(const snap::VmState& a, const snap::VmState& b, double elapsed_ns) {
  check_same_struct("PIC master", a.pic_master, b.pic_master, kPicFields);
  check_same_struct("PIC slave", a.pic_slave, b.pic_slave, kPicFields);
  check_same_struct("IOAPIC", a.ioapic, b.ioapic, kIoapicFields);
  // The PIT as saved; count_load_time is the host's ktime when the count was
  // loaded, which a restore sets anew.
  for (int i = 0; i < 3; ++i) {
    INFO("PIT channel " << i);
    const auto &x = a.pit.channels[i], &y = b.pit.channels[i];
    CAIRN_CHECK_SAME(x, y, count);
    CAIRN_CHECK_SAME(x, y, latched_count);
    CAIRN_CHECK_SAME(x, y, count_latched);
    CAIRN_CHECK_SAME(x, y, status_latched);
    CAIRN_CHECK_SAME(x, y, status);
    CAIRN_CHECK_SAME(x, y, read_state);
    CAIRN_CHECK_SAME(x, y, write_state);
    CAIRN_CHECK_SAME(x, y, write_latch);
    CAIRN_CHECK_SAME(x, y, rw_mode);
    CAIRN_CHECK_SAME(x, y, mode);
    CAIRN_CHECK_SAME(x, y, bcd);
    CAIRN_CHECK_SAME(x, y, gate);
  }
  CAIRN_CHECK_SAME(a.pit, b.pit, flags);
  // The restore set kvmclock to A's value; it ran on from there until B's capture.
  const auto clock_delta = static_cast<int64_t>(b.clock.clock - a.clock.clock);
  INFO(fmt::format("kvmclock {} ns in A, {} in B; {:.0f} ns between the saves", a.clock.clock, b.clock.clock,
                   elapsed_ns));
  CHECK(clock_delta >= 0);
  CHECK(static_cast<double>(clock_delta) <= elapsed_ns + kElapsedMarginNs);
}

void check_devices(const snap::DeviceStates& a, const snap::DeviceStates& b) {
  const nlohmann::json ja = snap::device_states_to_json(a), jb = snap::device_states_to_json(b);
  for (const auto& item : ja.items()) {
    const std::string key = item.key();
    INFO("device state \"" << key << "\"\nA: " << item.value().dump()
                           << "\nB: " << (jb.contains(key) ? jb.at(key).dump() : std::string("missing")));
    CHECK((jb.contains(key) && item.value() == jb.at(key)));
  }
  CHECK(ja.size() == jb.size());
}

void check_same_state(const snap::MachineState& a, const snap::MachineState& b, double elapsed_ns) {
  CHECK(a.config.memory == kGuestMemory);
  CHECK(a.config.cpus == kGuestCpus);
  CHECK(a.config.memory == b.config.memory);
  CHECK(a.config.cpus == b.config.cpus);
  CHECK(a.config.disks == b.config.disks);
  CHECK(a.config.vsock_cid == b.config.vsock_cid);
  CHECK(a.config.kernel_cmdline == b.config.kernel_cmdline);
  REQUIRE(a.vcpus.size() == kGuestCpus);
  REQUIRE(b.vcpus.size() == kGuestCpus);
  for (unsigned i = 0; i < kGuestCpus; ++i) check_vcpu(i, a.vcpus[i], b.vcpus[i], elapsed_ns);
  check_vm(a.vm, b.vm, elapsed_ns);
  check_devices(a.devices, b.devices);
}

// --- Guest RAM --------------------------------------------------------------

// Guest RAM as a checkpoint's memory image holds it, one buffer per region.
// Fresh anonymous mappings: the pages the image leaves out stay unpopulated,
// so two guests' worth of RAM costs only what the images hold.
struct Ram {
  std::vector<snap::RegionLayout> layout;
  std::vector<Mapping> bufs;
};

Ram load_ram(const std::string& dir) {
  const std::string path = dir + "/memory.img";
  auto image = value_of(snap::MemoryImageReader::open(path), "opening " + path);
  Ram ram;
  ram.layout = image.layout();
  std::vector<snap::RamRegion> regions;
  for (const auto& l : ram.layout) {
    void* p = ::mmap(nullptr, l.size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) FAIL("mapping " << l.size << " bytes for " << path << ": " << std::strerror(errno));
    ram.bufs.emplace_back(p, l.size);
    regions.push_back({l.gpa, l.size, ram.bufs.back().data(), -1});
  }
  require_ok(image.load(regions, /*already_zero=*/true), "loading " + path);
  return ram;
}

// Where the guest registered kvmclock's wall-clock struct (0: nowhere).
uint64_t wall_clock_gpa(const snap::VcpuState& v) {
  for (const auto& m : v.msrs)
    if ((m.index == kMsrKvmWallClockNew || m.index == kMsrKvmWallClock) && m.data != 0) return m.data;
  return 0;
}

// A and B hold the same RAM, but for kvmclock's wall-clock struct: KVM
// rewrites it (version, boot time) whenever the VMM sets KVM_WALL_CLOCK(_NEW)
// as a restore does (kvm_write_wall_clock). That write is the kernel's, and
// harmless: the guest reads the struct only right after setting that MSR
// itself, which refreshes it.
void check_same_ram(const std::string& dir_a, const std::string& dir_b, uint64_t wall_clock) {
  const Ram a = load_ram(dir_a);
  const Ram b = load_ram(dir_b);
  REQUIRE(a.layout == b.layout);
  auto excused = [&](uint64_t gpa) {
    return wall_clock != 0 && gpa >= wall_clock && gpa < wall_clock + kPvclockWallClockSize;
  };
  uint64_t differing = 0;
  std::vector<std::string> ranges;  // the first few differing ranges
  for (size_t r = 0; r < a.layout.size(); ++r) {
    const uint64_t gpa = a.layout[r].gpa, size = a.layout[r].size;
    const uint8_t *pa = a.bufs[r].data(), *pb = b.bufs[r].data();
    for (uint64_t page = 0; page < size; page += snap::kMemoryPageSize) {
      if (std::memcmp(pa + page, pb + page, snap::kMemoryPageSize) == 0) continue;
      const uint64_t page_end = page + snap::kMemoryPageSize;
      auto differs = [&](uint64_t off) { return pa[off] != pb[off] && !excused(gpa + off); };
      for (uint64_t off = page; off < page_end;) {
        if (!differs(off)) {
          ++off;
          continue;
        }
        uint64_t end = off;
        while (end < page_end && differs(end)) ++end;
        differing += end - off;
        if (ranges.size() < 8) ranges.push_back(fmt::format("GPA {:#x} (+{} bytes)", gpa + off, end - off));
        off = end;
      }
    }
  }
  std::string list;
  for (const auto& s : ranges) list += "\n  " + s;
  INFO(differing << " bytes of guest RAM differ outside the wall-clock struct at GPA "
                 << fmt::format("{:#x}", wall_clock) << ", first:" << list);
  CHECK(differing == 0);
}

// --- Resources of the test's own process -----------------------------------

size_t open_fds() {
  return static_cast<size_t>(std::distance(fs::directory_iterator("/proc/self/fd"), fs::directory_iterator{}));
}

uint64_t rss_bytes() {
  std::ifstream f("/proc/self/status");
  for (std::string line; std::getline(f, line);)
    if (line.starts_with("VmRSS:")) return std::stoull(line.substr(6)) << 10;  // "VmRSS:  1234 kB"
  FAIL("no VmRSS in /proc/self/status");
  return 0;
}

}  // namespace

TEST_CASE("a restored checkpoint saves back unchanged, runs on, and restores leak nothing", "[kvm]") {
  TempDir tmp;
  REQUIRE(!tmp.path().empty());
  const std::string dir_a = tmp / "a", dir_b = tmp / "b";
  const std::string log_a = tmp / "console-a.log", log_b = tmp / "console-b.log";
  const MachineConfig cfg = guest_config(log_a);

  // 1-2. Boot the counting guest, pause it while it counts, save A.
  uint64_t last_count = 0;
  Clock::time_point before_a;
  {
    auto m = value_of(Machine::create(cfg), "creating the machine");
    RunningMachine run(*m);
    const bool counting = wait_for(120s, run, [&] { return counts(read_text(log_a)).size() >= 3; });
    if (!counting)
      FAIL("the guest did not count within 120 s (" << run.state() << "); its console:\n" << tail(read_text(log_a)));
    m->pause();
    // Paused, the guest writes nothing more: the log ends where its RAM stands.
    last_count = counts(read_text(log_a)).back();
    before_a = Clock::now();
    require_ok(m->save_checkpoint(dir_a), "saving checkpoint A");
    const MachineExit e = run.stop();
    INFO("the first machine " << describe(e));
    CHECK(e.kind == MachineExit::Kind::stopped);
  }

  // 2. Restore A into a machine whose vCPUs never run, and save B of it.
  // Its RAM is loaded before its VM state is set (not lazily, which sets the
  // VM state first and makes B wait for the RAM): the in-kernel PIT runs
  // without the vCPUs, and seconds of it would put a timer interrupt in a
  // LAPIC's IRR that A does not have. The chain below restores lazily.
  ::setenv("CAIRN_LAZY_RESTORE", "0", 1);
  auto restored = value_of(Machine::restore(dir_a, restore_config(cfg, log_b)), "restoring checkpoint A");
  ::unsetenv("CAIRN_LAZY_RESTORE");
  CHECK_FALSE(restored->memory_load_stats());
  require_ok(restored->save_checkpoint(dir_b), "saving checkpoint B of the restored machine, never started");
  const double elapsed_ns = std::chrono::duration<double, std::nano>(Clock::now() - before_a).count();

  // 3-4. The same state and the same RAM.
  const snap::MachineState a = load_state(dir_a);
  const snap::MachineState b = load_state(dir_b);
  check_same_state(a, b, elapsed_ns);
  check_same_ram(dir_a, dir_b, wall_clock_gpa(a.vcpus[0]));

  // 5. The restored guest goes on counting where it was, without booting again.
  {
    RunningMachine run(*restored);
    const bool went_on = wait_for(60s, run, [&] { return counts(read_text(log_b)).size() >= 5; });
    const std::string log = read_text(log_b);
    const auto after = counts(log);
    INFO("count " << last_count << " before the pause; the restored guest (" << run.state() << ") printed:\n"
                  << tail(log));
    require_went_on(went_on, run, *restored, tmp / "stuck-b");
    // The first complete line may be the one after a line the pause cut short.
    CHECK(after.front() > last_count);
    CHECK(after.front() <= last_count + 2);
    for (size_t i = 1; i < after.size(); ++i) CHECK(after[i] == after[i - 1] + 1);
    CHECK(log.find("user space ready") == std::string::npos);
    const MachineExit e = run.stop();
    INFO("the restored machine " << describe(e));
    CHECK(e.kind == MachineExit::Kind::stopped);
  }
  restored.reset();

  // 6. A chain: restore the last checkpoint, let the guest count on, pause,
  // save the next checkpoint, destroy the machine, 20 times. Every link goes
  // on from the count its checkpoint held (no drift), and nothing may pile up
  // in the process (fds of KVM objects, consoles, eventfds; guest memory, a
  // memfd mapped per machine).
  std::vector<size_t> fds;
  std::vector<uint64_t> rss;
  std::string from = dir_a;
  uint64_t held = last_count;
  const int cycles = chain_cycles();
  for (int cycle = 1; cycle <= cycles; ++cycle) {
    INFO("cycle " << cycle << ", restoring " << from << " (count " << held << ")");
    const std::string dir = tmp / fmt::format("cycle-{}", cycle);
    const std::string log = tmp / fmt::format("console-cycle-{}.log", cycle);
    {
      auto m = value_of(Machine::restore(from, restore_config(cfg, log)), "restoring " + from);
      // Lazily: the guest runs while its RAM arrives.
      REQUIRE(m->memory_load_stats());
      RunningMachine run(*m);
      const bool went_on = wait_for(60s, run, [&] { return counts(read_text(log)).size() >= 3; });
      INFO("the machine " << run.state() << "; its console:\n" << tail(read_text(log)));
      require_went_on(went_on, run, *m, tmp / fmt::format("stuck-{}", cycle));
      m->pause();
      const auto c = counts(read_text(log));
      CHECK(c.front() > held);
      CHECK(c.front() <= held + 2);
      held = c.back();
      require_ok(m->save_checkpoint(dir), "saving " + dir);
      const MachineExit e = run.stop();
      INFO("the machine " << describe(e));
      CHECK(e.kind == MachineExit::Kind::stopped);
    }
    std::error_code ec;
    if (from != dir_a) fs::remove_all(from, ec);
    fs::remove(log, ec);
    from = dir;
    fds.push_back(open_fds());
    rss.push_back(rss_bytes());
  }
  std::string series;
  for (size_t i = 0; i < fds.size(); ++i)
    series += fmt::format("\n  cycle {}: {} fds, {} KiB", i + 1, fds[i], rss[i] >> 10);
  INFO("after each destroyed machine:" << series);
  CHECK(fds.back() == fds.front());
  const auto growth = static_cast<int64_t>(rss.back()) - static_cast<int64_t>(rss[1]);
  CHECK(growth < (16LL << 20));
}
