// Coverage glue between g++ instrumentation and clang's libFuzzer engine.
//
// Why: the project needs g++ (clang 14, the only clang here, cannot compile
// libstdc++ 12's std::expected), but only clang emits the inline 8-bit
// counters libFuzzer reads. g++ can emit -fsanitize-coverage=trace-pc (a call
// per basic block) and trace-cmp (libFuzzer's own hooks handle those). This
// file, compiled WITHOUT coverage or sanitizers, turns the trace-pc calls into
// AFL-style edge counters and registers them with libFuzzer as one module.
// libFuzzer 14 defines its own __sanitizer_cov_trace_pc (it only prints "no
// longer supported" and exits), so the build links a copy of the engine
// archive with that symbol weakened; the strong definition here wins.
#include <cstddef>
#include <cstdint>

namespace {
constexpr size_t kCounters = size_t{1} << 16;  // edges hashed into 64 Ki counters
alignas(64) uint8_t counters[kCounters];
// libFuzzer requires a PC table per counter module: pairs {pc, flags}. The
// PCs are fake (i + 1); they only need to be distinct.
uintptr_t pc_table[2 * kCounters];
thread_local uintptr_t prev_location;
}  // namespace

extern "C" {
void __sanitizer_cov_8bit_counters_init(uint8_t* start, uint8_t* stop);
void __sanitizer_cov_pcs_init(const uintptr_t* pcs_beg, const uintptr_t* pcs_end);

// Edge = hash(this block) ^ (hash(previous block) >> 1), as AFL does.
__attribute__((no_sanitize_address, no_sanitize_undefined)) void __sanitizer_cov_trace_pc() {
  auto pc = reinterpret_cast<uintptr_t>(__builtin_return_address(0));
  uintptr_t cur = (pc ^ (pc >> 16)) & (kCounters - 1);
  counters[cur ^ prev_location]++;
  prev_location = cur >> 1;
}

// g++ emits floating-point compare hooks that libFuzzer does not define.
void __sanitizer_cov_trace_cmpf(float, float) {}
void __sanitizer_cov_trace_cmpd(double, double) {}

// g++'s UBSan runtime is separate from ASan's and would _exit(1) on a report
// without telling libFuzzer; aborting lets libFuzzer save the crashing input.
const char* __ubsan_default_options() { return "abort_on_error=1:print_stacktrace=1"; }
}

__attribute__((constructor)) static void cairn_register_gcc_coverage() {
  for (size_t i = 0; i < kCounters; ++i) pc_table[2 * i] = i + 1;
  __sanitizer_cov_8bit_counters_init(counters, counters + kCounters);
  __sanitizer_cov_pcs_init(pc_table, pc_table + 2 * kCounters);
}
