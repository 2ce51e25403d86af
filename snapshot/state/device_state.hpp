// The saved state of every device of a machine, and its JSON form (the
// "devices" section of the state file):
//   {"serial": <Serial8250State, see devices/serial8250_state_json.hpp>,
//    "i8042": {"ctr": n, "output": n or null, "expect_ctr": bool},
//    "debug_exit": {},                      (no state; present so the set is explicit)
//    "virtio": [{"device": "virtio-blk" | "virtio-vsock",
//                "transport": <MmioTransportState, see mmio_transport_state_json.hpp>,
//                "vsock": {"guest_cid": n}}  (virtio-vsock only)
//               , ...]}                     (in bus order: disks, then vsock)
#pragma once
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "devices/i8042.hpp"
#include "devices/serial8250.hpp"
#include "devices/virtio/mmio_transport.hpp"
#include "devices/virtio/vsock_device.hpp"

namespace cairn::snap {

struct VirtioDeviceState {
  std::string device;  // the device's name(): "virtio-blk", "virtio-vsock"
  MmioTransportState transport;
  std::optional<VsockState> vsock;
};

struct DeviceStates {
  Serial8250State serial;
  I8042State i8042;
  std::vector<VirtioDeviceState> virtio;
};

nlohmann::json device_states_to_json(const DeviceStates& d);
// Errc::corrupt when a key is missing or has the wrong type.
Result<DeviceStates> device_states_from_json(const nlohmann::json& j);

}  // namespace cairn::snap
