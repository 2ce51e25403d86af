// JSON form of Serial8250State for checkpoints: one object whose keys are the
// register names (numbers 0-255), "thr_interrupt_pending" (bool) and
// "rx_fifo" (array of byte values, oldest first).
#pragma once
#include <nlohmann/json.hpp>

#include "devices/serial8250.hpp"

namespace cairn {

inline void to_json(nlohmann::json& j, const Serial8250State& s) {
  j = nlohmann::json{{"dll", s.dll}, {"dlm", s.dlm}, {"ier", s.ier}, {"fcr", s.fcr},
                     {"lcr", s.lcr}, {"mcr", s.mcr}, {"lsr", s.lsr}, {"msr", s.msr},
                     {"scr", s.scr}, {"thr_interrupt_pending", s.thr_interrupt_pending},
                     {"rx_fifo", s.rx_fifo}};
}

inline void from_json(const nlohmann::json& j, Serial8250State& s) {
  j.at("dll").get_to(s.dll);
  j.at("dlm").get_to(s.dlm);
  j.at("ier").get_to(s.ier);
  j.at("fcr").get_to(s.fcr);
  j.at("lcr").get_to(s.lcr);
  j.at("mcr").get_to(s.mcr);
  j.at("lsr").get_to(s.lsr);
  j.at("msr").get_to(s.msr);
  j.at("scr").get_to(s.scr);
  j.at("thr_interrupt_pending").get_to(s.thr_interrupt_pending);
  j.at("rx_fifo").get_to(s.rx_fifo);
}

}  // namespace cairn
