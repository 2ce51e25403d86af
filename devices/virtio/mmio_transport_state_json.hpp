// JSON form of MmioTransportState for checkpoints:
//   {"device_features_sel": n, "driver_features_sel": n, "queue_sel": n,
//    "acked_features": n (64-bit), "status": n, "interrupt_status": n,
//    "config_generation": n,
//    "queues": [{"max_size": n, "size": n, "ready": bool, "desc_table": n,
//                "avail_ring": n, "used_ring": n, "next_avail": n, "next_used": n}, ...]}
#pragma once
#include <nlohmann/json.hpp>

#include "devices/virtio/mmio_transport.hpp"

namespace cairn {

inline void to_json(nlohmann::json& j, const MmioQueueState& q) {
  j = nlohmann::json{{"max_size", q.config.max_size},     {"size", q.config.size},
                     {"ready", q.config.ready},           {"desc_table", q.config.desc_table},
                     {"avail_ring", q.config.avail_ring}, {"used_ring", q.config.used_ring},
                     {"next_avail", q.next_avail},        {"next_used", q.next_used}};
}

inline void from_json(const nlohmann::json& j, MmioQueueState& q) {
  j.at("max_size").get_to(q.config.max_size);
  j.at("size").get_to(q.config.size);
  j.at("ready").get_to(q.config.ready);
  j.at("desc_table").get_to(q.config.desc_table);
  j.at("avail_ring").get_to(q.config.avail_ring);
  j.at("used_ring").get_to(q.config.used_ring);
  j.at("next_avail").get_to(q.next_avail);
  j.at("next_used").get_to(q.next_used);
}

inline void to_json(nlohmann::json& j, const MmioTransportState& s) {
  j = nlohmann::json{{"device_features_sel", s.device_features_sel},
                     {"driver_features_sel", s.driver_features_sel},
                     {"queue_sel", s.queue_sel},
                     {"acked_features", s.acked_features},
                     {"status", s.status},
                     {"interrupt_status", s.interrupt_status},
                     {"config_generation", s.config_generation},
                     {"queues", s.queues}};
}

inline void from_json(const nlohmann::json& j, MmioTransportState& s) {
  j.at("device_features_sel").get_to(s.device_features_sel);
  j.at("driver_features_sel").get_to(s.driver_features_sel);
  j.at("queue_sel").get_to(s.queue_sel);
  j.at("acked_features").get_to(s.acked_features);
  j.at("status").get_to(s.status);
  j.at("interrupt_status").get_to(s.interrupt_status);
  j.at("config_generation").get_to(s.config_generation);
  j.at("queues").get_to(s.queues);
}

}  // namespace cairn
