#include "snapshot/memory/file_io.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace cairn::snap {

Result<void> pread_full(int fd, uint64_t off, std::span<uint8_t> out, const std::string& what) {
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::pread(fd, out.data() + done, out.size() - done, static_cast<off_t>(off + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail_errno("reading {} at offset {}", what, off + done);
    if (n == 0) return fail(Errc::corrupt, "{} is truncated (wanted {} bytes at offset {})", what, out.size(), off);
    done += static_cast<size_t>(n);
  }
  return {};
}

Result<void> pwrite_full(int fd, uint64_t off, std::span<const uint8_t> in, const std::string& what) {
  size_t done = 0;
  while (done < in.size()) {
    ssize_t n = ::pwrite(fd, in.data() + done, in.size() - done, static_cast<off_t>(off + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return fail_errno("writing {} at offset {}", what, off + done);
    done += static_cast<size_t>(n);
  }
  return {};
}

Result<uint64_t> file_size(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return fail_errno("fstat");
  return static_cast<uint64_t>(st.st_size);
}

Result<UniqueFd> open_read(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return fail_errno("opening {}", path);
  return fd;
}

Result<UniqueFd> create_new(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd) return fail_errno("creating {}", path);
  return fd;
}

Result<void> fsync_fd(int fd, const std::string& what) {
  if (::fsync(fd) != 0) return fail_errno("fsync of {}", what);
  return {};
}

Result<void> fsync_dir(const std::string& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return fail_errno("opening folder {}", dir);
  return fsync_fd(fd.get(), dir);
}

Result<std::vector<uint8_t>> read_small_file(const std::string& path, uint64_t max_bytes) {
  auto fd = open_read(path);
  if (!fd) return std::unexpected(fd.error());
  auto size = file_size(fd->get());
  if (!size) return std::unexpected(std::move(size.error()).context(path));
  if (*size > max_bytes)
    return fail(Errc::corrupt, "{} is {} bytes, more than the {} bytes such a file may have", path, *size, max_bytes);
  std::vector<uint8_t> buf(*size);
  if (auto r = pread_full(fd->get(), 0, buf, path); !r) return std::unexpected(r.error());
  return buf;
}

}  // namespace cairn::snap
