#include "snapshot/state/machine_state.hpp"

#include <map>

#include "snapshot/state/container.hpp"

namespace cairn::snap {

static_assert(sizeof(kvm_irqchip) == 520 && sizeof(kvm_pit_state2) == 112 && sizeof(kvm_clock_data) == 48);
static_assert(sizeof(kvm_regs) == 144 && sizeof(kvm_sregs) == 312 && sizeof(kvm_xcrs) == 392);
static_assert(sizeof(kvm_msr_entry) == 16 && sizeof(kvm_lapic_state) == 1024 && sizeof(kvm_vcpu_events) == 64);
static_assert(sizeof(kvm_debugregs) == 128 && sizeof(kvm_mp_state) == 4);

namespace {
template <class T>
Section raw_section(uint32_t type, uint32_t instance, const T& v) {
  static_assert(std::is_trivially_copyable_v<T>);
  const auto* p = reinterpret_cast<const uint8_t*>(&v);
  return Section{type, instance, std::vector<uint8_t>(p, p + sizeof(T))};
}

Section json_section(uint32_t type, const nlohmann::json& j) {
  std::string text = j.dump();
  return Section{type, 0, std::vector<uint8_t>(text.begin(), text.end())};
}

nlohmann::json config_to_json(const SavedConfig& c) {
  nlohmann::json disks = nlohmann::json::array();
  for (auto& d : c.disks) disks.push_back({{"read_only", d.read_only}, {"size", d.size}});
  return {{"memory", c.memory},
          {"cpus", c.cpus},
          {"disks", disks},
          {"vsock_cid", c.vsock_cid ? nlohmann::json(*c.vsock_cid) : nlohmann::json(nullptr)},
          {"kernel_cmdline", c.kernel_cmdline}};
}

Result<SavedConfig> config_from_json(const nlohmann::json& j) {
  SavedConfig c;
  try {
    j.at("memory").get_to(c.memory);
    j.at("cpus").get_to(c.cpus);
    for (auto& d : j.at("disks")) c.disks.push_back({d.at("read_only").get<bool>(), d.at("size").get<uint64_t>()});
    if (!j.at("vsock_cid").is_null()) c.vsock_cid = j.at("vsock_cid").get<uint64_t>();
    j.at("kernel_cmdline").get_to(c.kernel_cmdline);
  } catch (const nlohmann::json::exception& e) {
    return fail(Errc::corrupt, "machine config: {}", e.what());
  }
  if (c.cpus == 0 || c.cpus > kStateMaxCpus) return fail(Errc::corrupt, "machine config: {} vCPUs", c.cpus);
  return c;
}

Result<nlohmann::json> parse_json(const Section& s, const char* what) {
  auto j = nlohmann::json::parse(s.payload.begin(), s.payload.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return fail(Errc::corrupt, "{} section is not a JSON object", what);
  return j;
}

// Copies a fixed-size KVM struct out of a section whose size must match exactly.
template <class T>
Result<void> take_raw(const Section& s, T& out) {
  if (s.payload.size() != sizeof(T))
    return fail(Errc::corrupt, "section {} (instance {}) is {} bytes, expected {}", s.type, s.instance,
                s.payload.size(), sizeof(T));
  std::memcpy(&out, s.payload.data(), sizeof(T));
  return {};
}
}  // namespace

Result<std::vector<uint8_t>> encode_machine_state(const MachineState& s) {
  if (s.vcpus.size() != s.config.cpus)
    return fail(Errc::invalid_argument, "state of {} vCPUs for a machine with {}", s.vcpus.size(), s.config.cpus);
  std::vector<Section> out;
  out.push_back(json_section(kSecConfig, config_to_json(s.config)));
  out.push_back(json_section(kSecDevices, device_states_to_json(s.devices)));
  out.push_back(raw_section(kSecPicMaster, 0, s.vm.pic_master));
  out.push_back(raw_section(kSecPicSlave, 0, s.vm.pic_slave));
  out.push_back(raw_section(kSecIoapic, 0, s.vm.ioapic));
  out.push_back(raw_section(kSecPit, 0, s.vm.pit));
  out.push_back(raw_section(kSecClock, 0, s.vm.clock));
  for (uint32_t i = 0; i < s.vcpus.size(); ++i) {
    const VcpuState& v = s.vcpus[i];
    if (v.xsave.size() < sizeof(kvm_xsave) || v.xsave.size() > kStateMaxXsaveBytes || v.msrs.size() > kStateMaxMsrs)
      return fail(Errc::invalid_argument, "vCPU {}: XSAVE area or MSR list out of bounds", i);
    out.push_back(raw_section(kSecRegs, i, v.regs));
    out.push_back(raw_section(kSecSregs, i, v.sregs));
    out.push_back(Section{kSecXsave, i, v.xsave});
    out.push_back(raw_section(kSecXcrs, i, v.xcrs));
    const auto* m = reinterpret_cast<const uint8_t*>(v.msrs.data());
    out.push_back(Section{kSecMsrs, i, std::vector<uint8_t>(m, m + v.msrs.size() * sizeof(kvm_msr_entry))});
    out.push_back(raw_section(kSecLapic, i, v.lapic));
    out.push_back(raw_section(kSecEvents, i, v.events));
    out.push_back(raw_section(kSecDebugregs, i, v.debugregs));
    out.push_back(raw_section(kSecMpState, i, v.mp_state));
    out.push_back(raw_section(kSecTscKhz, i, v.tsc_khz));
  }
  return encode_sections(out);
}

Result<MachineState> decode_machine_state(std::span<const uint8_t> file, const std::string& what) {
  auto sections = decode_sections(file, what);
  if (!sections) return std::unexpected(sections.error());
  auto bad = [&](Error e) { return std::unexpected(std::move(e).context(fmt::format("state file {}", what))); };

  std::map<std::pair<uint32_t, uint32_t>, const Section*> by_key;
  for (auto& s : *sections)
    if (!by_key.emplace(std::pair(s.type, s.instance), &s).second)
      return bad(Error{Errc::corrupt, fmt::format("section {} (instance {}) appears twice", s.type, s.instance)});
  auto get = [&](uint32_t type, uint32_t instance) -> Result<const Section*> {
    auto it = by_key.find({type, instance});
    if (it == by_key.end()) return fail(Errc::corrupt, "section {} (instance {}) is missing", type, instance);
    return it->second;
  };
#define CAIRN_SECTION(var, type, inst) \
  auto var = get(type, inst);          \
  if (!var) return bad(var.error())
#define CAIRN_TAKE(sec, dst) \
  if (auto r_ = take_raw(**sec, dst); !r_) return bad(r_.error())

  MachineState st;
  CAIRN_SECTION(cfg, kSecConfig, 0);
  auto cj = parse_json(**cfg, "machine config");
  if (!cj) return bad(cj.error());
  auto c = config_from_json(*cj);
  if (!c) return bad(c.error());
  st.config = std::move(*c);
  CAIRN_SECTION(dev, kSecDevices, 0);
  auto dj = parse_json(**dev, "device state");
  if (!dj) return bad(dj.error());
  auto d = device_states_from_json(*dj);
  if (!d) return bad(d.error());
  st.devices = std::move(*d);

  CAIRN_SECTION(pm, kSecPicMaster, 0);
  CAIRN_TAKE(pm, st.vm.pic_master);
  CAIRN_SECTION(ps, kSecPicSlave, 0);
  CAIRN_TAKE(ps, st.vm.pic_slave);
  CAIRN_SECTION(io, kSecIoapic, 0);
  CAIRN_TAKE(io, st.vm.ioapic);
  CAIRN_SECTION(pit, kSecPit, 0);
  CAIRN_TAKE(pit, st.vm.pit);
  CAIRN_SECTION(clk, kSecClock, 0);
  CAIRN_TAKE(clk, st.vm.clock);

  st.vcpus.resize(st.config.cpus);
  for (uint32_t i = 0; i < st.config.cpus; ++i) {
    VcpuState& v = st.vcpus[i];
    CAIRN_SECTION(regs, kSecRegs, i);
    CAIRN_TAKE(regs, v.regs);
    CAIRN_SECTION(sregs, kSecSregs, i);
    CAIRN_TAKE(sregs, v.sregs);
    CAIRN_SECTION(xsave, kSecXsave, i);
    if ((*xsave)->payload.size() < sizeof(kvm_xsave) || (*xsave)->payload.size() > kStateMaxXsaveBytes)
      return bad(Error{Errc::corrupt, fmt::format("vCPU {}: XSAVE area of {} bytes", i, (*xsave)->payload.size())});
    v.xsave = (*xsave)->payload;
    CAIRN_SECTION(xcrs, kSecXcrs, i);
    CAIRN_TAKE(xcrs, v.xcrs);
    CAIRN_SECTION(msrs, kSecMsrs, i);
    const auto& mp = (*msrs)->payload;
    if (mp.size() % sizeof(kvm_msr_entry) || mp.size() / sizeof(kvm_msr_entry) > kStateMaxMsrs)
      return bad(Error{Errc::corrupt, fmt::format("vCPU {}: MSR section of {} bytes", i, mp.size())});
    v.msrs.resize(mp.size() / sizeof(kvm_msr_entry));
    std::memcpy(v.msrs.data(), mp.data(), mp.size());
    CAIRN_SECTION(lapic, kSecLapic, i);
    CAIRN_TAKE(lapic, v.lapic);
    CAIRN_SECTION(events, kSecEvents, i);
    CAIRN_TAKE(events, v.events);
    CAIRN_SECTION(dr, kSecDebugregs, i);
    CAIRN_TAKE(dr, v.debugregs);
    CAIRN_SECTION(mps, kSecMpState, i);
    CAIRN_TAKE(mps, v.mp_state);
    CAIRN_SECTION(tsc, kSecTscKhz, i);
    CAIRN_TAKE(tsc, v.tsc_khz);
  }
#undef CAIRN_SECTION
#undef CAIRN_TAKE
  size_t expected = 7 + 10 * size_t{st.config.cpus};
  if (sections->size() != expected)
    return bad(Error{Errc::corrupt, fmt::format("{} sections, a machine with {} vCPUs has {}", sections->size(),
                                                st.config.cpus, expected)});
  return st;
}

}  // namespace cairn::snap
