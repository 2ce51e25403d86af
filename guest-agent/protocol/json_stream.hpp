// Splits a byte stream of the qemu-guest-agent wire protocol into JSON texts.
//
// The stream carries JSON objects back to back, usually one per line, but a
// reader must not depend on the newline (qemu-ga's own parser does not). A
// text starts at '{' (or '[') and ends where its brackets balance, brackets
// inside strings not counted. Besides that:
//  - a 0xFF byte (never valid in UTF-8 JSON) resets the reader and drops a
//    partial text: clients send it before guest-sync-delimited so that stale
//    bytes of an earlier session are flushed; the agent puts it before the
//    reply to guest-sync-delimited for the same reason in the other direction;
//  - anything else outside a text (a bare word, a number, stray bytes) is
//    reported as one error and skipped up to the next newline or '{';
//  - a text longer than kMaxJsonText bytes, or nested deeper than
//    kMaxJsonDepth, is reported as one error and skipped up to the next
//    newline (or 0xFF), where reading starts afresh.
// The reader only frames; parsing the text is the caller's job.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace cairn {

inline constexpr size_t kMaxJsonText = 64 * 1024;
inline constexpr int kMaxJsonDepth = 64;

struct JsonFrame {
  enum Kind { text, error } kind = text;
  std::string data;  // the JSON text, or the error's description
};

class JsonStreamReader {
 public:
  // Consumes `bytes`; every complete frame is appended to `out`.
  void feed(std::string_view bytes, std::vector<JsonFrame>& out);
  // Drops any partial text (as a 0xFF byte does).
  void reset();
  // True while a text has started but not ended.
  bool partial() const { return mode_ != Mode::idle; }

 private:
  enum class Mode { idle, text, garbage, discard };
  void start_text(char c);
  void text_byte(char c, std::vector<JsonFrame>& out);

  Mode mode_ = Mode::idle;
  std::string buf_;
  int depth_ = 0;
  bool in_string_ = false;
  bool escape_ = false;
};

}  // namespace cairn
