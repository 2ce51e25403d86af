#include "devices/virtio/vsock_packet.hpp"

namespace cairn {
namespace {

template <class T>
void put_le(uint8_t* p, T v) {
  for (size_t i = 0; i < sizeof(T); ++i) p[i] = static_cast<uint8_t>(static_cast<uint64_t>(v) >> (8 * i));
}

template <class T>
T get_le(const uint8_t* p) {
  uint64_t v = 0;
  for (size_t i = 0; i < sizeof(T); ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return static_cast<T>(v);
}

}  // namespace

VsockHeader::Bytes VsockHeader::encode() const {
  Bytes b{};
  put_le(&b[0], src_cid);
  put_le(&b[8], dst_cid);
  put_le(&b[16], src_port);
  put_le(&b[20], dst_port);
  put_le(&b[24], len);
  put_le(&b[28], type);
  put_le(&b[30], op);
  put_le(&b[32], flags);
  put_le(&b[36], buf_alloc);
  put_le(&b[40], fwd_cnt);
  return b;
}

VsockHeader VsockHeader::decode(std::span<const uint8_t, kVsockHeaderSize> b) {
  VsockHeader h;
  h.src_cid = get_le<uint64_t>(&b[0]);
  h.dst_cid = get_le<uint64_t>(&b[8]);
  h.src_port = get_le<uint32_t>(&b[16]);
  h.dst_port = get_le<uint32_t>(&b[20]);
  h.len = get_le<uint32_t>(&b[24]);
  h.type = get_le<uint16_t>(&b[28]);
  h.op = get_le<uint16_t>(&b[30]);
  h.flags = get_le<uint32_t>(&b[32]);
  h.buf_alloc = get_le<uint32_t>(&b[36]);
  h.fwd_cnt = get_le<uint32_t>(&b[40]);
  return h;
}

}  // namespace cairn
