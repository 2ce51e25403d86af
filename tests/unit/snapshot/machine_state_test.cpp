#include <catch2/catch.hpp>
#include <functional>
#include <random>

#include "snapshot/state/container.hpp"
#include "snapshot/state/machine_state.hpp"

using namespace cairn;
using namespace cairn::snap;

namespace {
template <class T>
void randomize(T& v, std::mt19937_64& rng) {
  auto* p = reinterpret_cast<uint8_t*>(&v);
  for (size_t i = 0; i < sizeof(T); ++i) p[i] = static_cast<uint8_t>(rng());
}
template <class T>
bool same(const T& a, const T& b) {
  return std::memcmp(&a, &b, sizeof(T)) == 0;
}

MachineState sample_state(unsigned cpus) {
  std::mt19937_64 rng(cpus);
  MachineState s;
  s.config.memory = 256ULL << 20;
  s.config.cpus = cpus;
  s.config.disks = {{false, 1 << 30}, {true, 4096}};
  s.config.vsock_cid = 7;
  s.config.kernel_cmdline = "console=ttyS0 virtio_mmio.device=4K@0xd0000000:5";
  randomize(s.vm.pic_master, rng);
  randomize(s.vm.pic_slave, rng);
  randomize(s.vm.ioapic, rng);
  randomize(s.vm.pit, rng);
  randomize(s.vm.clock, rng);
  for (unsigned i = 0; i < cpus; ++i) {
    VcpuState v;
    randomize(v.mp_state, rng);
    randomize(v.regs, rng);
    randomize(v.sregs, rng);
    v.xsave.resize(4096 + 64 * i);
    for (auto& b : v.xsave) b = static_cast<uint8_t>(rng());
    randomize(v.xcrs, rng);
    randomize(v.debugregs, rng);
    randomize(v.lapic, rng);
    for (uint32_t m = 0; m < 40; ++m) v.msrs.push_back({0xc0000000 + m, 0, rng()});
    randomize(v.events, rng);
    v.tsc_khz = 2'400'000 + i;
    s.vcpus.push_back(std::move(v));
  }
  s.devices.serial.ier = 3;
  s.devices.serial.rx_fifo = {'a', 'b'};
  s.devices.i8042.ctr = 0x47;
  s.devices.i8042.output = 0x55;
  VirtioDeviceState blk{"virtio-blk", {}, std::nullopt};
  blk.transport.status = 15;
  blk.transport.acked_features = 1ULL << 32;
  blk.transport.queues.resize(1);
  blk.transport.queues[0].config.size = 256;
  blk.transport.queues[0].next_avail = 77;
  VirtioDeviceState vs{"virtio-vsock", {}, VsockState{7}};
  vs.transport.queues.resize(3);
  s.devices.virtio = {blk, blk, vs};
  return s;
}

void check_equal(const MachineState& a, const MachineState& b) {
  CHECK(a.config.memory == b.config.memory);
  CHECK(a.config.cpus == b.config.cpus);
  CHECK(a.config.disks == b.config.disks);
  CHECK(a.config.vsock_cid == b.config.vsock_cid);
  CHECK(a.config.kernel_cmdline == b.config.kernel_cmdline);
  CHECK(same(a.vm.pic_master, b.vm.pic_master));
  CHECK(same(a.vm.pic_slave, b.vm.pic_slave));
  CHECK(same(a.vm.ioapic, b.vm.ioapic));
  CHECK(same(a.vm.pit, b.vm.pit));
  CHECK(same(a.vm.clock, b.vm.clock));
  REQUIRE(a.vcpus.size() == b.vcpus.size());
  for (size_t i = 0; i < a.vcpus.size(); ++i) {
    auto &x = a.vcpus[i], &y = b.vcpus[i];
    CHECK(same(x.mp_state, y.mp_state));
    CHECK(same(x.regs, y.regs));
    CHECK(same(x.sregs, y.sregs));
    CHECK(x.xsave == y.xsave);
    CHECK(same(x.xcrs, y.xcrs));
    CHECK(same(x.debugregs, y.debugregs));
    CHECK(same(x.lapic, y.lapic));
    REQUIRE(x.msrs.size() == y.msrs.size());
    for (size_t m = 0; m < x.msrs.size(); ++m) {
      CHECK(x.msrs[m].index == y.msrs[m].index);
      CHECK(x.msrs[m].data == y.msrs[m].data);
    }
    CHECK(same(x.events, y.events));
    CHECK(x.tsc_khz == y.tsc_khz);
  }
  CHECK(a.devices.serial == b.devices.serial);
  CHECK(a.devices.i8042 == b.devices.i8042);
  REQUIRE(a.devices.virtio.size() == b.devices.virtio.size());
  for (size_t i = 0; i < a.devices.virtio.size(); ++i) {
    CHECK(a.devices.virtio[i].device == b.devices.virtio[i].device);
    CHECK(a.devices.virtio[i].transport == b.devices.virtio[i].transport);
    CHECK(a.devices.virtio[i].vsock == b.devices.virtio[i].vsock);
  }
}

// Re-encodes the sections of a valid file after `edit`, keeping checksums valid.
std::vector<uint8_t> edited(const MachineState& s, const std::function<void(std::vector<Section>&)>& edit) {
  auto bytes = encode_machine_state(s);
  REQUIRE(bytes);
  auto sections = decode_sections(*bytes, "x");
  REQUIRE(sections);
  edit(*sections);
  auto out = encode_sections(*sections);
  REQUIRE(out);
  return *out;
}
}  // namespace

TEST_CASE("machine state: round trip with one and with three vCPUs, and again (stable bytes)") {
  for (unsigned cpus : {1u, 3u}) {
    auto s = sample_state(cpus);
    auto bytes = encode_machine_state(s);
    REQUIRE(bytes);
    auto back = decode_machine_state(*bytes, "state.bin");
    REQUIRE(back);
    check_equal(s, *back);
    auto again = encode_machine_state(*back);
    REQUIRE(again);
    CHECK(*again == *bytes);
  }
}

TEST_CASE("machine state: a flipped byte anywhere is refused") {
  auto bytes = *encode_machine_state(sample_state(2));
  std::mt19937_64 rng(5);
  for (int n = 0; n < 500; ++n) {
    auto bad = bytes;
    size_t off = rng() % bad.size();
    bad[off] ^= static_cast<uint8_t>(1u << (rng() % 8));
    auto r = decode_machine_state(bad, "state.bin");
    INFO("offset " << off);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::corrupt);
  }
}

TEST_CASE("machine state: missing, repeated, unknown or mis-sized sections are refused") {
  auto s = sample_state(2);
  struct Case {
    const char* what;
    std::function<void(std::vector<Section>&)> edit;
    const char* message;
  };
  std::vector<Case> cases = {
      {"missing LAPIC of vCPU 1",
       [](auto& v) { std::erase_if(v, [](auto& x) { return x.type == kSecLapic && x.instance == 1; }); }, "missing"},
      {"repeated PIT",
       [](auto& v) {
         v.push_back(Section{kSecPit, 0, std::vector<uint8_t>(112)});
       },
       "twice"},
      {"unknown section",
       [](auto& v) {
         v.push_back(Section{999, 0, {}});
       },
       "sections"},
      {"a third vCPU's registers",
       [](auto& v) {
         v.push_back(Section{kSecRegs, 2, std::vector<uint8_t>(144)});
       },
       "sections"},
      {"short sregs",
       [](auto& v) {
         for (auto& x : v)
           if (x.type == kSecSregs) x.payload.pop_back();
       },
       "bytes"},
      {"small XSAVE",
       [](auto& v) {
         for (auto& x : v)
           if (x.type == kSecXsave) x.payload.resize(100);
       },
       "XSAVE"},
      {"MSRs not whole entries",
       [](auto& v) {
         for (auto& x : v)
           if (x.type == kSecMsrs) x.payload.push_back(0);
       },
       "MSR"},
      {"config not JSON",
       [](auto& v) {
         for (auto& x : v)
           if (x.type == kSecConfig) x.payload = {'{', 'x'};
       },
       "JSON"},
      {"config without cpus",
       [](auto& v) {
         for (auto& x : v)
           if (x.type == kSecConfig) {
             std::string t = R"({"memory": 1, "disks": [], "vsock_cid": null, "kernel_cmdline": ""})";
             x.payload.assign(t.begin(), t.end());
           }
       },
       "cpus"},
      {"device state without serial",
       [](auto& v) {
         for (auto& x : v)
           if (x.type == kSecDevices) x.payload = {'{', '}'};
       },
       "serial"},
  };
  for (auto& c : cases) {
    INFO(c.what);
    auto r = decode_machine_state(edited(s, c.edit), "state.bin");
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::corrupt);
    CHECK_THAT(r.error().message, Catch::Contains(c.message));
  }
}

TEST_CASE("machine state: the encoder refuses inconsistent input") {
  auto s = sample_state(2);
  s.vcpus.pop_back();
  CHECK(encode_machine_state(s).error().code == Errc::invalid_argument);
  auto t = sample_state(1);
  t.vcpus[0].xsave.resize(10);
  CHECK(encode_machine_state(t).error().code == Errc::invalid_argument);
}

TEST_CASE("device state: the i8042 comes back with its configuration byte and pending output") {
  I8042 dev([] {});
  uint8_t cmd = I8042::kCmdWriteCtr, ctr = 0x47, read_ctr = I8042::kCmdReadCtr;
  dev.write(4, std::span(&cmd, 1));
  dev.write(0, std::span(&ctr, 1));
  dev.write(4, std::span(&read_ctr, 1));  // the answer waits on the data port
  auto saved = dev.save();
  CHECK(saved.ctr == 0x47);
  CHECK(saved.output == std::optional<uint8_t>(0x47));

  DeviceStates d;
  d.i8042 = saved;
  auto back = device_states_from_json(device_states_to_json(d));
  REQUIRE(back);
  auto copy = I8042::restore(back->i8042, [] {});
  uint8_t status = 0, data = 0;
  copy->read(4, std::span(&status, 1));
  CHECK((status & I8042::kStatusOutputFull) != 0);
  copy->read(0, std::span(&data, 1));
  CHECK(data == 0x47);
  CHECK(copy->save() == I8042State{0x47, std::nullopt, false});
}
