// cairn-vsock: a tiny vsock tool for guests whose userland has none (busybox).
//   cairn-vsock listen PORT     accept one connection; echo every byte back
//   cairn-vsock connect CID PORT  send stdin, then print what comes back until EOF
// Used by the integration tests and handy for checking a guest's vsock by hand.
#include <linux/vm_sockets.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

int usage() {
  std::fprintf(stderr, "usage: cairn-vsock listen PORT | cairn-vsock connect CID PORT\n");
  return 2;
}

bool parse_u32(const char* s, unsigned& out) {
  char* end = nullptr;
  errno = 0;
  unsigned long v = std::strtoul(s, &end, 10);
  if (*s == '\0' || *end != '\0' || errno || v > 0xffffffffUL) return false;
  out = static_cast<unsigned>(v);
  return true;
}

bool write_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

int do_listen(unsigned port) {
  int s = ::socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) return std::perror("cairn-vsock: socket"), 1;
  sockaddr_vm addr{};
  addr.svm_family = AF_VSOCK;
  addr.svm_cid = VMADDR_CID_ANY;
  addr.svm_port = port;
  if (::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return std::perror("cairn-vsock: bind"), 1;
  if (::listen(s, 1) != 0) return std::perror("cairn-vsock: listen"), 1;
  std::printf("cairn-vsock: listening on port %u\n", port);
  std::fflush(stdout);
  int c = ::accept(s, nullptr, nullptr);
  if (c < 0) return std::perror("cairn-vsock: accept"), 1;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(c, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (!write_all(c, buf, static_cast<size_t>(n))) break;
  }
  ::close(c);
  ::close(s);
  return 0;
}

int do_connect(unsigned cid, unsigned port) {
  int s = ::socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) return std::perror("cairn-vsock: socket"), 1;
  sockaddr_vm addr{};
  addr.svm_family = AF_VSOCK;
  addr.svm_cid = cid;
  addr.svm_port = port;
  if (::connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return std::perror("cairn-vsock: connect"), 1;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(STDIN_FILENO, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (!write_all(s, buf, static_cast<size_t>(n))) return std::perror("cairn-vsock: write"), 1;
  }
  ::shutdown(s, SHUT_WR);
  for (;;) {
    ssize_t n = ::read(s, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    write_all(STDOUT_FILENO, buf, static_cast<size_t>(n));
  }
  ::close(s);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  unsigned port = 0, cid = 0;
  if (argc == 3 && std::strcmp(argv[1], "listen") == 0 && parse_u32(argv[2], port)) return do_listen(port);
  if (argc == 4 && std::strcmp(argv[1], "connect") == 0 && parse_u32(argv[2], cid) && parse_u32(argv[3], port))
    return do_connect(cid, port);
  return usage();
}
