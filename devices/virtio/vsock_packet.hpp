// virtio-vsock wire format (virtio 1.1+ section 5.10.6). Every packet on the
// rx and tx queues starts with this 44-byte header, all fields little-endian,
// no padding:
//
//   offset size field
//        0    8 src_cid
//        8    8 dst_cid
//       16    4 src_port
//       20    4 dst_port
//       24    4 len        payload bytes that follow the header (op RW only)
//       28    2 type       1 = STREAM (the only type this device speaks)
//       30    2 op         see VsockOp
//       32    4 flags      SHUTDOWN: bit 0 = RCV (sender will not receive),
//                          bit 1 = SEND (sender will not send)
//       36    4 buf_alloc  sender's receive buffer size for this connection
//       40    4 fwd_cnt    bytes the sender has consumed from that buffer
//
// The payload may sit in the same descriptor as the header or in later ones;
// callers use chain offsets, never descriptor boundaries.
// The event queue carries 4-byte events: le32 id (0 = TRANSPORT_RESET).
#pragma once
#include <array>
#include <cstdint>
#include <span>

namespace cairn {

inline constexpr uint32_t kVirtioIdVsock = 19;
inline constexpr uint64_t kVsockHostCid = 2;
inline constexpr uint16_t kVsockTypeStream = 1;
inline constexpr uint32_t kVsockShutdownRcv = 1;
inline constexpr uint32_t kVsockShutdownSend = 2;
inline constexpr uint32_t kVsockEventTransportReset = 0;
inline constexpr size_t kVsockHeaderSize = 44;
// Largest payload accepted or produced in one packet (Linux uses the same bound).
inline constexpr uint32_t kVsockMaxPayload = 64 * 1024;

enum class VsockOp : uint16_t {
  invalid = 0,
  request = 1,
  response = 2,
  rst = 3,
  shutdown = 4,
  rw = 5,
  credit_update = 6,
  credit_request = 7,
};

struct VsockHeader {
  uint64_t src_cid = 0;
  uint64_t dst_cid = 0;
  uint32_t src_port = 0;
  uint32_t dst_port = 0;
  uint32_t len = 0;
  uint16_t type = kVsockTypeStream;
  uint16_t op = 0;
  uint32_t flags = 0;
  uint32_t buf_alloc = 0;
  uint32_t fwd_cnt = 0;

  VsockOp operation() const { return static_cast<VsockOp>(op); }

  using Bytes = std::array<uint8_t, kVsockHeaderSize>;
  Bytes encode() const;
  static VsockHeader decode(std::span<const uint8_t, kVsockHeaderSize> b);
};

}  // namespace cairn
