#include "vmm/cli/machine_options.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <filesystem>

#include "vmm/base/parse_size.hpp"

namespace cairn {

void MachineOptions::add_to(CLI::App* sub) {
  sub->add_option("--kernel", kernel, "bzImage or ELF vmlinux (default: the default guest's vmlinux)");
  sub->add_option("--initrd", initrd, "initramfs (default: the default guest's initramfs)");
  sub->add_option("--cmdline", cmdline, "extra kernel command-line arguments");
  sub->add_option("--memory", memory, "guest memory, e.g. 256M or 1G")->capture_default_str();
  sub->add_option("--cpus", cpus, "number of vCPUs")->capture_default_str();
  sub->add_option("--disk", disks, "virtio-blk disk PATH[,ro] (repeatable; vda, vdb, ...)");
  sub->add_option("--vsock", vsock, "virtio-vsock CID,PATH (host side: Unix socket PATH)");
  sub->add_option("--console", console, "stdio or file:PATH")->capture_default_str();
  sub->add_option("command", command, "after --: a command for the default guest's init to run");
}

std::string default_images_dir() {
  if (const char* env = std::getenv("CAIRN_IMAGES"); env && *env) return env;
  char self[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n <= 0) return "images";
  self[n] = '\0';
  return (std::filesystem::path(self).parent_path() / "images").string();
}

namespace {
Result<void> check_readable(const std::string& what, const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return fail_errno("{} {}", what, path);
  if (!S_ISREG(st.st_mode)) return fail(Errc::invalid_argument, "{} {} is not a regular file", what, path);
  if (::access(path.c_str(), R_OK) != 0) return fail_errno("{} {}", what, path);
  return {};
}
}  // namespace

Result<MachineConfig> MachineOptions::to_config() const {
  MachineConfig c;
  std::string images = default_images_dir();
  c.kernel = kernel.empty() ? images + "/vmlinux" : kernel;
  c.initrd = initrd.empty() && kernel.empty() ? images + "/initramfs.cpio.gz" : initrd;
  if (auto r = check_readable("kernel", c.kernel); !r) {
    if (kernel.empty())
      return fail(Errc::not_found, "the default guest kernel {} is missing: build it with images/build "
                  "or pass --kernel (or set CAIRN_IMAGES)", c.kernel);
    return std::unexpected(r.error());
  }
  if (!c.initrd.empty())
    if (auto r = check_readable("initrd", c.initrd); !r) return std::unexpected(r.error());
  c.cmdline = cmdline;
  auto mem = parse_size(memory);
  if (!mem) return std::unexpected(std::move(mem.error()).context("--memory"));
  // A bare number means MiB, as in QEMU's -m.
  c.memory = memory.find_first_not_of("0123456789") == std::string::npos ? (*mem << 20) : *mem;
  c.cpus = cpus;
  for (auto& d : disks) {
    DiskConfig dc;
    dc.path = d;
    if (d.ends_with(",ro")) {
      dc.path = d.substr(0, d.size() - 3);
      dc.read_only = true;
    }
    if (dc.path.empty()) return fail(Errc::invalid_argument, "--disk needs a path");
    if (auto r = check_readable("disk", dc.path); !r) return std::unexpected(r.error());
    c.disks.push_back(dc);
  }
  if (!vsock.empty()) {
    auto comma = vsock.find(',');
    if (comma == std::string::npos || comma + 1 == vsock.size())
      return fail(Errc::invalid_argument, "--vsock must be CID,PATH (e.g. 3,/tmp/vm.vsock), not '{}'", vsock);
    VsockConfigArg v;
    try {
      size_t pos = 0;
      v.cid = std::stoull(vsock.substr(0, comma), &pos);
      if (pos != comma) throw std::invalid_argument("cid");
    } catch (...) {
      return fail(Errc::invalid_argument, "--vsock CID '{}' is not a number", vsock.substr(0, comma));
    }
    if (v.cid < 3 || v.cid >= 0xffffffffULL)
      return fail(Errc::invalid_argument, "--vsock CID {} is reserved (use 3 to 4294967294)", v.cid);
    v.uds_path = vsock.substr(comma + 1);
    c.vsock = v;
  }
  if (console != "stdio" && !(console.starts_with("file:") && console.size() > 5))
    return fail(Errc::invalid_argument, "--console must be 'stdio' or 'file:PATH', not '{}'", console);
  c.console = console;
  c.guest_command = command;
  if (auto r = validate_machine_config(c); !r) return std::unexpected(r.error());
  return c;
}

}  // namespace cairn
