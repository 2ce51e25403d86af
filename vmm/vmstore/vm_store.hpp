// The state directory of stored VMs.
//
//   $CAIRN_HOME/                  default $XDG_DATA_HOME/cairn, else ~/.local/share/cairn
//     vms/<NAME>/                 one folder per VM, mode 0700 (NAME: vm_name.hpp)
//       config.json               the configuration (vm_config.hpp)
//       lock                      held by the running VMM (vm_lock.hpp)
//       control.sock              the running VMM's control socket, mode 0600 (vmm/control/)
//       console.log               the guest console of a detached VM (appended)
//
// A folder is created with mkdir(2), so two `vm create` of one name cannot
// both succeed; it is removed only while its lock is held by the remover.
#pragma once
#include <string>
#include <vector>

#include "vmm/base/error.hpp"
#include "vmm/vmstore/vm_config.hpp"

namespace cairn {

struct VmPaths {
  std::string dir, config, lock, control_socket, console_log;
};

// $CAIRN_HOME, else $XDG_DATA_HOME/cairn, else $HOME/.local/share/cairn (absolute).
Result<std::string> default_cairn_home();

class VmStore {
 public:
  explicit VmStore(std::string home) : home_(std::move(home)) {}
  static Result<VmStore> open_default();

  const std::string& home() const { return home_; }
  std::string vms_dir() const { return home_ + "/vms"; }
  VmPaths paths(const std::string& name) const;

  // Creates the VM's folder and writes its config (r.name must be valid).
  // An existing VM of that name: Errc::invalid_state.
  Result<void> create(const VmRecord& r);
  // Errc::not_found when no such VM exists.
  Result<VmRecord> load(const std::string& name) const;
  // Rewrites config.json atomically.
  Result<void> save(const VmRecord& r) const;
  // Names of every stored VM (folders holding a config.json), sorted.
  Result<std::vector<std::string>> names() const;
  // Deletes the VM's folder; Errc::invalid_state while the VM runs.
  Result<void> remove(const std::string& name) const;

 private:
  std::string home_;
};

}  // namespace cairn
