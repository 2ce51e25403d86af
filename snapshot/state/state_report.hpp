// A readable summary of a saved machine (state.bin): where each vCPU stands,
// its timer and interrupt state, the interrupt controllers and the devices.
// For people (and failed tests) asking why a restored guest does not go on;
// the format is for reading, not parsing.
#pragma once
#include <string>

#include "snapshot/state/machine_state.hpp"

namespace cairn::snap {

std::string describe_machine_state(const MachineState& st);

}  // namespace cairn::snap
