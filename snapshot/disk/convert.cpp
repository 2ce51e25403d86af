#include "snapshot/disk/convert.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>

#include "snapshot/disk/io.hpp"
#include "vmm/base/all_zero.hpp"
#include "vmm/base/unique_fd.hpp"

namespace cairn::disk {
namespace {

constexpr size_t kChunk = 1 << 20;

}  // namespace

Result<void> convert_raw_to_cairn(const std::string& raw, const std::string& dst, uint32_t block_shift,
                                  const ProgressFn& progress) {
  UniqueFd in(::open(raw.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in) return fail_errno("opening {}", raw);
  CAIRN_TRY_CTX(size, file_size(in.get()), raw);
  if (size == 0) return fail(Errc::invalid_argument, "{} is empty", raw);
  uint64_t vsize = (size + 511) / 512 * 512;
  if (auto r = create_base(dst, vsize, block_shift); !r) return r;
  CAIRN_TRY_CTX(chain, open_chain(dst, true), dst);
  uint64_t bs = chain->block_size();
  std::vector<uint8_t> buf(std::max<uint64_t>(kChunk, bs));
  buf.resize(buf.size() / bs * bs);
  for (uint64_t off = 0; off < vsize; off += buf.size()) {
    size_t n = size_t(std::min<uint64_t>(buf.size(), vsize - off));
    std::fill(buf.begin(), buf.begin() + n, 0);
    size_t have = size_t(std::min<uint64_t>(n, size - std::min(size, off)));
    if (auto r = pread_full(in.get(), off, std::span(buf).first(have)); !r) return r;
    for (size_t b = 0; b < n; b += bs) {
      auto piece = std::span(buf).subspan(b, std::min<size_t>(bs, n - b));
      if (all_zero(piece)) continue;
      if (auto r = chain->write(off + b, piece); !r) return r;
    }
    if (progress) progress(off + n, vsize);
  }
  return chain->flush();
}

Result<void> convert_cairn_to_raw(const std::string& top, const std::string& dst, const ProgressFn& progress) {
  CAIRN_TRY_CTX(chain, open_chain(top, false), top);
  if (::access(dst.c_str(), F_OK) == 0) return fail(Errc::invalid_argument, "{} already exists", dst);
  UniqueFd out(::open(dst.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (!out) return fail_errno("creating {}", dst);
  if (::ftruncate(out.get(), off_t(chain->size())) != 0) return fail_errno("sizing {}", dst);
  std::vector<uint8_t> buf(kChunk);
  for (uint64_t off = 0; off < chain->size(); off += kChunk) {
    size_t n = size_t(std::min<uint64_t>(kChunk, chain->size() - off));
    auto piece = std::span(buf).first(n);
    if (auto r = chain->read(off, piece); !r) return r;
    if (!all_zero(piece))
      if (auto r = pwrite_full(out.get(), off, piece); !r) return r;
    if (progress) progress(off + n, chain->size());
  }
  if (::fsync(out.get()) != 0) return fail_errno("fsync {}", dst);
  return {};
}

}  // namespace cairn::disk

namespace cairn::disk {

Result<void> flatten_chain(const std::string& top, const std::string& dst, const ProgressFn& progress) {
  CAIRN_TRY_CTX(src, open_chain(top, false), top);
  if (::access(dst.c_str(), F_OK) == 0) return fail(Errc::invalid_argument, "{} already exists", dst);
  const uint64_t bs = src->block_size();
  uint32_t shift = 0;
  while ((uint64_t{1} << shift) < bs) ++shift;
  if (auto r = create_base(dst, src->size(), shift); !r) return r;
  CAIRN_TRY_CTX(out, open_chain(dst, true), dst);
  std::vector<uint8_t> buf(bs);
  for (uint64_t off = 0; off < src->size(); off += bs) {
    auto piece = std::span(buf).first(size_t(std::min<uint64_t>(bs, src->size() - off)));
    if (auto r = src->read(off, piece); !r) return r;
    if (!all_zero(piece))
      if (auto r = out->write(off, piece); !r) return r;
    if (progress && (off / bs) % 64 == 0) progress(off, src->size());
  }
  if (progress) progress(src->size(), src->size());
  return out->flush();
}

}  // namespace cairn::disk
