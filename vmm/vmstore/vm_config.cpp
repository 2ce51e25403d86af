#include "vmm/vmstore/vm_config.hpp"

#include <ctime>

#include "vmm/vmstore/atomic_file.hpp"
#include "vmm/vmstore/uuid.hpp"
#include "vmm/vmstore/vm_name.hpp"

namespace cairn {

using nlohmann::json;

namespace {
// Typed field access that reports which field is wrong instead of throwing.
template <class T>
Result<T> field(const json& j, const char* key, const char* where) {
  auto it = j.find(key);
  if (it == j.end()) return fail(Errc::corrupt, "{}: \"{}\" is missing", where, key);
  try {
    if constexpr (std::is_same_v<T, std::string>) {
      if (!it->is_string()) throw std::invalid_argument("type");
    } else if constexpr (std::is_same_v<T, bool>) {
      if (!it->is_boolean()) throw std::invalid_argument("type");
    } else if constexpr (std::is_unsigned_v<T>) {
      if (!it->is_number_unsigned()) throw std::invalid_argument("type");
    } else {
      if (!it->is_number_integer()) throw std::invalid_argument("type");
    }
    return it->get<T>();
  } catch (const std::exception&) {
    return fail(Errc::corrupt, "{}: \"{}\" has the wrong type", where, key);
  }
}

#define CAIRN_FIELD(var, T, j, key, where) \
  auto var##_f_ = field<T>(j, key, where);   \
  if (!var##_f_) return std::unexpected(var##_f_.error()); \
  auto var = std::move(*var##_f_)
}  // namespace

json machine_config_to_json(const MachineConfig& m) {
  json disks = json::array();
  for (auto& d : m.disks) disks.push_back({{"path", d.path}, {"read_only", d.read_only}});
  json vsock = nullptr;
  if (m.vsock) vsock = {{"cid", m.vsock->cid}, {"uds_path", m.vsock->uds_path}};
  return {{"kernel", m.kernel},   {"initrd", m.initrd}, {"cmdline", m.cmdline},
          {"memory", m.memory},   {"cpus", m.cpus},     {"disks", disks},
          {"vsock", vsock},       {"console", m.console}, {"guest_command", m.guest_command}};
}

Result<MachineConfig> machine_config_from_json(const json& j) {
  constexpr const char* w = "machine";
  if (!j.is_object()) return fail(Errc::corrupt, "\"machine\" is not an object");
  MachineConfig m;
  CAIRN_FIELD(kernel, std::string, j, "kernel", w);
  CAIRN_FIELD(initrd, std::string, j, "initrd", w);
  CAIRN_FIELD(cmdline, std::string, j, "cmdline", w);
  CAIRN_FIELD(memory, uint64_t, j, "memory", w);
  CAIRN_FIELD(cpus, unsigned, j, "cpus", w);
  CAIRN_FIELD(console, std::string, j, "console", w);
  m.kernel = kernel;
  m.initrd = initrd;
  m.cmdline = cmdline;
  m.memory = memory;
  m.cpus = cpus;
  m.console = console;
  auto disks = j.find("disks");
  if (disks == j.end() || !disks->is_array()) return fail(Errc::corrupt, "machine: \"disks\" is not an array");
  for (auto& d : *disks) {
    if (!d.is_object()) return fail(Errc::corrupt, "machine: a disk entry is not an object");
    CAIRN_FIELD(path, std::string, d, "path", "disk");
    CAIRN_FIELD(ro, bool, d, "read_only", "disk");
    m.disks.push_back({path, ro});
  }
  auto vs = j.find("vsock");
  if (vs != j.end() && !vs->is_null()) {
    if (!vs->is_object()) return fail(Errc::corrupt, "machine: \"vsock\" is not an object");
    CAIRN_FIELD(cid, uint64_t, *vs, "cid", "vsock");
    CAIRN_FIELD(uds, std::string, *vs, "uds_path", "vsock");
    m.vsock = VsockConfigArg{cid, uds};
  }
  auto cmd = j.find("guest_command");
  if (cmd != j.end()) {
    if (!cmd->is_array()) return fail(Errc::corrupt, "machine: \"guest_command\" is not an array");
    for (auto& w2 : *cmd) {
      if (!w2.is_string()) return fail(Errc::corrupt, "machine: \"guest_command\" holds a non-string");
      m.guest_command.push_back(w2.get<std::string>());
    }
  }
  return m;
}

json vm_record_to_json(const VmRecord& r) {
  json j = r.extra.is_object() ? r.extra : json::object();
  j["format"] = kVmConfigFormat;
  j["id"] = r.id;
  j["name"] = r.name;
  j["created"] = r.created;
  j["machine"] = machine_config_to_json(r.machine);
  return j;
}

Result<VmRecord> vm_record_from_json(const json& j) {
  if (!j.is_object()) return fail(Errc::corrupt, "the configuration is not a JSON object");
  CAIRN_FIELD(format, int, j, "format", "config");
  if (format != kVmConfigFormat)
    return fail(Errc::corrupt, "configuration format {} is not supported (this cairn reads format {})", format,
                kVmConfigFormat);
  VmRecord r;
  CAIRN_FIELD(id, std::string, j, "id", "config");
  CAIRN_FIELD(name, std::string, j, "name", "config");
  CAIRN_FIELD(created, std::string, j, "created", "config");
  if (!is_uuid(id)) return fail(Errc::corrupt, "config: \"id\" '{}' is not a UUID", id);
  if (auto v = validate_vm_name(name); !v) return fail(Errc::corrupt, "config: {}", v.error().message);
  r.id = id;
  r.name = name;
  r.created = created;
  auto m = j.find("machine");
  if (m == j.end()) return fail(Errc::corrupt, "config: \"machine\" is missing");
  auto mc = machine_config_from_json(*m);
  if (!mc) return std::unexpected(mc.error());
  r.machine = std::move(*mc);
  for (auto& [k, v] : j.items())
    if (k != "format" && k != "id" && k != "name" && k != "created" && k != "machine") r.extra[k] = v;
  return r;
}

Result<void> save_vm_record(const std::string& path, const VmRecord& r) {
  return write_file_atomic(path, vm_record_to_json(r).dump(2) + "\n", 0600);
}

Result<VmRecord> load_vm_record(const std::string& path) {
  auto text = read_small_file(path, kMaxVmConfigBytes);
  if (!text) return std::unexpected(text.error());
  json j = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return fail(Errc::corrupt, "{} is not valid JSON", path);
  auto r = vm_record_from_json(j);
  if (!r) return std::unexpected(std::move(r.error()).context(path));
  return r;
}

std::string utc_timestamp_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace cairn
