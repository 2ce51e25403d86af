#include "snapshot/disk/io.hpp"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "vmm/base/unique_fd.hpp"

namespace cairn::disk {

Result<void> pread_full(int fd, uint64_t off, std::span<uint8_t> out) {
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::pread(fd, out.data() + done, out.size() - done, off_t(off + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail_errno("read at {:#x}", off + done);
    }
    if (n == 0) return fail(Errc::corrupt, "unexpected end of file at {:#x}", off + done);
    done += size_t(n);
  }
  return {};
}

Result<void> pwrite_full(int fd, uint64_t off, std::span<const uint8_t> in) {
  size_t done = 0;
  while (done < in.size()) {
    ssize_t n = ::pwrite(fd, in.data() + done, in.size() - done, off_t(off + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail_errno("write at {:#x}", off + done);
    }
    done += size_t(n);
  }
  return {};
}

Result<uint64_t> file_size(int fd) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return fail_errno("fstat");
  return uint64_t(st.st_size);
}

Result<void> datasync(int fd) {
  if (::fdatasync(fd) != 0) return fail_errno("fdatasync");
  return {};
}

Result<void> sync_parent_dir(const std::string& path) {
  auto dir = std::filesystem::path(path).parent_path();
  if (dir.empty()) dir = ".";
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return fail_errno("opening folder {}", dir.string());
  if (::fsync(fd.get()) != 0) return fail_errno("fsync of folder {}", dir.string());
  return {};
}

Result<Uuid> new_uuid() {
  Uuid u;
  size_t done = 0;
  while (done < u.size()) {
    ssize_t n = ::getrandom(u.data() + done, u.size() - done, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail_errno("getrandom");
    }
    done += size_t(n);
  }
  u[6] = uint8_t((u[6] & 0x0f) | 0x40);  // version 4
  u[8] = uint8_t((u[8] & 0x3f) | 0x80);  // RFC 4122 variant
  return u;
}

std::string uuid_text(const Uuid& u) {
  static const char* hex = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < u.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) s += '-';
    s += hex[u[i] >> 4];
    s += hex[u[i] & 15];
  }
  return s;
}

}  // namespace cairn::disk
