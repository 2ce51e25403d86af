#include "vmm/vmstore/vm_store.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <system_error>

#include "vmm/vmstore/atomic_file.hpp"
#include "vmm/vmstore/vm_lock.hpp"
#include "vmm/vmstore/vm_name.hpp"

namespace cairn {

namespace fs = std::filesystem;

namespace {
Result<void> mkdir_p(const std::string& path) {
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec) return fail(errc_from_errno(ec.value()), "creating folder {}: {}", path, ec.message());
  return {};
}
}  // namespace

Result<std::string> default_cairn_home() {
  std::string home;
  if (const char* h = std::getenv("CAIRN_HOME"); h && *h) {
    home = h;
  } else if (const char* x = std::getenv("XDG_DATA_HOME"); x && *x) {
    home = std::string(x) + "/cairn";
  } else if (const char* u = std::getenv("HOME"); u && *u) {
    home = std::string(u) + "/.local/share/cairn";
  } else {
    return fail(Errc::invalid_argument, "neither CAIRN_HOME nor HOME is set: cannot find the VM state folder");
  }
  std::error_code ec;
  fs::path abs = fs::absolute(home, ec);
  if (ec) return fail(Errc::invalid_argument, "state folder {}: {}", home, ec.message());
  return abs.lexically_normal().string();
}

Result<VmStore> VmStore::open_default() {
  auto home = default_cairn_home();
  if (!home) return std::unexpected(home.error());
  return VmStore(*home);
}

VmPaths VmStore::paths(const std::string& name) const {
  VmPaths p;
  p.dir = vms_dir() + "/" + name;
  p.config = p.dir + "/config.json";
  p.lock = p.dir + "/lock";
  p.control_socket = p.dir + "/control.sock";
  p.console_log = p.dir + "/console.log";
  return p;
}

Result<void> VmStore::create(const VmRecord& r) {
  if (auto v = validate_vm_name(r.name); !v) return v;
  if (auto d = mkdir_p(vms_dir()); !d) return d;
  VmPaths p = paths(r.name);
  if (::mkdir(p.dir.c_str(), 0700) != 0) {
    if (errno == EEXIST) return fail(Errc::invalid_state, "a VM named '{}' already exists", r.name);
    return fail_errno("creating {}", p.dir);
  }
  if (auto s = save_vm_record(p.config, r); !s) {
    std::error_code ec;
    fs::remove_all(p.dir, ec);
    return s;
  }
  return fsync_dir(vms_dir());
}

Result<VmRecord> VmStore::load(const std::string& name) const {
  if (auto v = validate_vm_name(name); !v) return std::unexpected(v.error());
  VmPaths p = paths(name);
  if (::access(p.dir.c_str(), F_OK) != 0)
    return fail(Errc::not_found, "no VM named '{}' (in {}; see 'cairn vm list')", name, vms_dir());
  auto r = load_vm_record(p.config);
  if (!r) return std::unexpected(std::move(r.error()).context(fmt::format("VM '{}'", name)));
  if (r->name != name)
    return fail(Errc::corrupt, "{} names the VM '{}', but its folder is '{}'", p.config, r->name, name);
  return r;
}

Result<void> VmStore::save(const VmRecord& r) const { return save_vm_record(paths(r.name).config, r); }

Result<std::vector<std::string>> VmStore::names() const {
  std::vector<std::string> out;
  std::error_code ec;
  if (!fs::exists(vms_dir(), ec)) return out;
  for (auto it = fs::directory_iterator(vms_dir(), ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    std::string n = it->path().filename().string();
    if (!validate_vm_name(n) || !it->is_directory()) continue;
    if (fs::exists(it->path() / "config.json")) out.push_back(n);
  }
  if (ec) return fail(errc_from_errno(ec.value()), "listing {}: {}", vms_dir(), ec.message());
  std::sort(out.begin(), out.end());
  return out;
}

Result<void> VmStore::remove(const std::string& name) const {
  if (auto r = load(name); !r && r.error().code == Errc::not_found) return std::unexpected(r.error());
  VmPaths p = paths(name);
  // Holding the lock keeps a `vm start` from starting the VM under our feet.
  auto lock = VmLock::try_acquire(p.lock);
  if (!lock) {
    if (lock.error().code != Errc::busy) return std::unexpected(lock.error());
    auto st = probe_lock(p.lock);
    pid_t pid = st ? st->pid : 0;
    return fail(Errc::invalid_state, "VM '{}' is running (pid {}); stop it first with 'cairn vm stop {}'", name,
                pid, name);
  }
  std::error_code ec;
  fs::remove_all(p.dir, ec);
  if (ec) return fail(errc_from_errno(ec.value()), "removing {}: {}", p.dir, ec.message());
  return fsync_dir(vms_dir());
}

}  // namespace cairn
