#include "vmm/base/inherited_fds.hpp"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <vector>

namespace cairn {

void close_inherited_fds(int keep) {
  std::vector<int> fds;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    int fd = std::atoi(it->path().filename().c_str());
    if (fd > STDERR_FILENO && fd != keep) fds.push_back(fd);
  }
  for (int fd : fds) ::close(fd);  // includes the iterator's own, already closed: EBADF is harmless
}

}  // namespace cairn
