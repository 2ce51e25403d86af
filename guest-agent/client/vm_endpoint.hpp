// Finds the guest agent of a named VM: the VM's state folder
// $CAIRN_HOME/vms/NAME/config.json records its virtio-vsock Unix socket as
// {"machine": {"vsock": {"cid": N, "uds_path": P}}} (vmm/vmstore/vm_config.hpp;
// same home rules as vmm/vmstore/vm_store.hpp). Only that one field is read,
// so the agent client does not depend on the rest of the VM store. A relative
// P is taken relative to the VM's folder.
#pragma once
#include <string>

#include "guest-agent/client/agent_client.hpp"

namespace cairn {

// $CAIRN_HOME, else $XDG_DATA_HOME/cairn, else $HOME/.local/share/cairn.
std::string cairn_home();

Result<AgentEndpoint> vm_agent_endpoint(const std::string& home, const std::string& vm_name);

}  // namespace cairn
