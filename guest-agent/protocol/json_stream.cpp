#include "guest-agent/protocol/json_stream.hpp"

#include <string>

namespace cairn {

namespace {
bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }
constexpr char kReset = static_cast<char>(0xFF);
}  // namespace

void JsonStreamReader::reset() {
  mode_ = Mode::idle;
  buf_.clear();
  depth_ = 0;
  in_string_ = false;
  escape_ = false;
}

void JsonStreamReader::start_text(char c) {
  mode_ = Mode::text;
  buf_.assign(1, c);
  depth_ = 1;
  in_string_ = false;
  escape_ = false;
}

void JsonStreamReader::text_byte(char c, std::vector<JsonFrame>& out) {
  buf_.push_back(c);
  if (buf_.size() > kMaxJsonText) {
    out.push_back({JsonFrame::error, "request exceeds " + std::to_string(kMaxJsonText) + " bytes"});
    reset();
    mode_ = Mode::discard;
    return;
  }
  if (in_string_) {
    if (escape_) escape_ = false;
    else if (c == '\\') escape_ = true;
    else if (c == '"') in_string_ = false;
    return;
  }
  switch (c) {
    case '"': in_string_ = true; break;
    case '{': case '[':
      if (++depth_ > kMaxJsonDepth) {
        out.push_back({JsonFrame::error, "JSON nesting exceeds " + std::to_string(kMaxJsonDepth) + " levels"});
        reset();
        mode_ = Mode::discard;
      }
      break;
    case '}': case ']':
      if (--depth_ == 0) {
        out.push_back({JsonFrame::text, std::move(buf_)});
        reset();
      }
      break;
    default: break;
  }
}

void JsonStreamReader::feed(std::string_view bytes, std::vector<JsonFrame>& out) {
  for (char c : bytes) {
    if (c == kReset) {
      // A garbage run cut short by a reset is still reported, so that every
      // rejected byte sequence leaves a trace.
      if (mode_ == Mode::garbage) out.push_back({JsonFrame::error, "JSON parse error: unexpected input"});
      reset();
      continue;
    }
    switch (mode_) {
      case Mode::idle:
        if (is_space(c)) break;
        if (c == '{' || c == '[') start_text(c);
        else mode_ = Mode::garbage;
        break;
      case Mode::text: text_byte(c, out); break;
      case Mode::garbage:
        if (c == '\n' || c == '{') {
          out.push_back({JsonFrame::error, "JSON parse error: unexpected input"});
          reset();
          if (c == '{') start_text(c);
        }
        break;
      case Mode::discard:
        if (c == '\n') reset();
        break;
    }
  }
}

}  // namespace cairn
