#include "snapshot/state/device_state.hpp"

#include "devices/serial8250_state_json.hpp"
#include "devices/virtio/mmio_transport_state_json.hpp"

namespace cairn::snap {

namespace {
constexpr size_t kMaxVirtioDevices = 64;
}

nlohmann::json device_states_to_json(const DeviceStates& d) {
  nlohmann::json j;
  j["serial"] = d.serial;
  j["i8042"] = {{"ctr", d.i8042.ctr},
                {"output", d.i8042.output ? nlohmann::json(*d.i8042.output) : nlohmann::json(nullptr)},
                {"expect_ctr", d.i8042.expect_ctr}};
  j["debug_exit"] = nlohmann::json::object();
  j["virtio"] = nlohmann::json::array();
  for (auto& v : d.virtio) {
    nlohmann::json e{{"device", v.device}, {"transport", v.transport}};
    if (v.vsock) e["vsock"] = {{"guest_cid", v.vsock->guest_cid}};
    j["virtio"].push_back(std::move(e));
  }
  return j;
}

Result<DeviceStates> device_states_from_json(const nlohmann::json& j) {
  DeviceStates d;
  try {
    j.at("serial").get_to(d.serial);
    if (d.serial.rx_fifo.size() > Serial8250::kRxFifoCapacity)
      return fail(Errc::corrupt, "serial state holds {} input bytes (the FIFO has {})", d.serial.rx_fifo.size(),
                  Serial8250::kRxFifoCapacity);
    auto& k = j.at("i8042");
    k.at("ctr").get_to(d.i8042.ctr);
    if (!k.at("output").is_null()) d.i8042.output = k.at("output").get<uint8_t>();
    k.at("expect_ctr").get_to(d.i8042.expect_ctr);
    if (!j.at("debug_exit").is_object()) return fail(Errc::corrupt, "debug_exit state is not an object");
    auto& list = j.at("virtio");
    if (!list.is_array() || list.size() > kMaxVirtioDevices)
      return fail(Errc::corrupt, "virtio device list is not an array of at most {}", kMaxVirtioDevices);
    for (auto& e : list) {
      VirtioDeviceState v;
      e.at("device").get_to(v.device);
      e.at("transport").get_to(v.transport);
      if (e.contains("vsock")) v.vsock = VsockState{e.at("vsock").at("guest_cid").get<uint64_t>()};
      d.virtio.push_back(std::move(v));
    }
  } catch (const nlohmann::json::exception& e) {
    return fail(Errc::corrupt, "device state: {}", e.what());
  }
  return d;
}

}  // namespace cairn::snap
