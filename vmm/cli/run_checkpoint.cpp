#include "vmm/cli/run_checkpoint.hpp"

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace cairn {

void RunCheckpointOptions::add_to(CLI::App* sub) {
  auto* after = sub->add_option("--checkpoint-after", checkpoint_after,
                                "take a standard checkpoint SECONDS after start, then let the guest go on");
  auto* dir = sub->add_option("--checkpoint-dir", checkpoint_dir, "the new folder for --checkpoint-after");
  after->needs(dir);
  dir->needs(after);
  after->check(CLI::NonNegativeNumber);
  sub->add_option("--restore", restore_dir,
                  "start from the checkpoint in folder DIR instead of booting (same memory, vCPUs and disks)")
      ->check(CLI::ExistingDirectory);
}

Result<std::unique_ptr<Machine>> RunCheckpointOptions::make_machine(const MachineConfig& cfg) const {
  if (restore_dir.empty()) return Machine::create(cfg);
  if (!cfg.guest_command.empty())
    return fail(Errc::invalid_argument,
                "a restored guest goes on where it was: no command can be given with --restore");
  return Machine::restore(restore_dir, cfg);
}

MachineExit RunCheckpointOptions::run(Machine& m) const {
  if (checkpoint_after < 0) return m.run();
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  std::thread timer([&] {
    {
      std::unique_lock lk(mu);
      if (cv.wait_for(lk, std::chrono::duration<double>(checkpoint_after), [&] { return done; })) return;
    }
    auto s = m.save_checkpoint(checkpoint_dir);
    if (!s) {
      m.request_stop(
          {MachineExit::Kind::error, 0, fmt::format("checkpoint {}: {}", checkpoint_dir, s.error().message)});
      return;
    }
    fmt::print(stderr,
               "cairn: checkpoint saved to {}: {} MiB of RAM ({} pages stored, {} zero) in a {:.1f} MiB image and "
               "{} KiB of state; guest paused {:.0f} ms (stopping {:.0f} ms, state {:.0f} ms, {} chunks {:.0f} ms); "
               "memory copied {} ({:.0f} ms while the guest ran), {:.0f} ms in all\n",
               checkpoint_dir, s->guest_memory_bytes >> 20, s->stored_pages, s->zero_pages,
               static_cast<double>(s->memory_file_bytes) / (1 << 20), (s->state_file_bytes + 1023) / 1024, s->paused_ms,
               s->pause_ms, s->state_ms, s->paused_chunks, s->memory_ms, s->memory_copy, s->live_copy_ms,
               s->total_ms);
  });
  MachineExit e = m.run();
  {
    std::lock_guard lk(mu);
    done = true;
  }
  cv.notify_all();
  timer.join();
  return e;
}

}  // namespace cairn
