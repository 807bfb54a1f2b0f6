#include "mnemo/persistence/event_id.hpp"

#include <chrono>
#include <mutex>
#include <random>

namespace mnemo::persistence {

namespace {

uint64_t random_u64() {
  thread_local std::mt19937_64 gen{[] {
    std::random_device rd;
    return (uint64_t{rd()} << 32) ^ rd();
  }()};
  return gen();
}

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool is_dash_position(size_t i) noexcept {
  return i == 8 || i == 13 || i == 18 || i == 23;
}

}  // namespace

event_id event_id::make_v7() {
  // RFC 9562 method 1: a 12-bit counter in rand_a keeps ids of the same
  // millisecond ordered; on overflow the timestamp moves one ms ahead.
  static std::mutex mtx;
  static uint64_t last_ms = 0;
  static uint32_t counter = 0;
  using namespace std::chrono;
  auto now = static_cast<uint64_t>(
      duration_cast<milliseconds>(system_clock::now().time_since_epoch())
          .count());
  uint64_t ms;
  uint32_t seq;
  {
    std::lock_guard<std::mutex> guard{mtx};
    if (now > last_ms) {
      last_ms = now;
      counter = static_cast<uint32_t>(random_u64() & 0x1ff);
    } else if (++counter > 0xfff) {
      ++last_ms;
      counter = 0;
    }
    ms = last_ms;
    seq = counter;
  }
  auto rand_b = random_u64();
  event_id id;
  auto& b = id.bytes;
  for (int i = 0; i < 6; ++i) b[i] = static_cast<uint8_t>(ms >> (40 - 8 * i));
  b[6] = static_cast<uint8_t>(0x70 | ((seq >> 8) & 0x0f));
  b[7] = static_cast<uint8_t>(seq & 0xff);
  b[8] = static_cast<uint8_t>(0x80 | ((rand_b >> 56) & 0x3f));
  for (int i = 9; i < 16; ++i)
    b[i] = static_cast<uint8_t>(rand_b >> (8 * (15 - i)));
  return id;
}

std::optional<event_id> event_id::parse(std::string_view text) {
  if (text.size() != 36) return std::nullopt;
  event_id id;
  size_t out = 0;
  for (size_t i = 0; i < text.size();) {
    if (is_dash_position(i)) {
      if (text[i] != '-') return std::nullopt;
      ++i;
      continue;
    }
    auto hi = hex_value(text[i]);
    auto lo = hex_value(text[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    id.bytes[out++] = static_cast<uint8_t>(hi * 16 + lo);
    i += 2;
  }
  return id;
}

bool event_id::is_nil() const noexcept {
  for (auto b : bytes)
    if (b != 0) return false;
  return true;
}

std::string event_id::to_string() const {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(36);
  for (size_t i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out.push_back('-');
    out.push_back(digits[bytes[i] >> 4]);
    out.push_back(digits[bytes[i] & 0x0f]);
  }
  return out;
}

}  // namespace mnemo::persistence
