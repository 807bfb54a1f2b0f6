#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mnemo::persistence {

/// A 128-bit event id in UUID layout. Ids made by `make_v7()` are
/// time-ordered (RFC 9562 version 7), so the journal's id index stays
/// append-mostly. The nil id (all zero) means "let the journal assign one".
struct event_id {
  /// The 16 bytes in network order.
  std::array<uint8_t, 16> bytes{};

  /// Returns a new version-7 id: 48 bits of Unix milliseconds, then a
  /// counter that keeps ids made in one process strictly increasing, then
  /// random bits. Thread-safe.
  static event_id make_v7();

  /// Parses the canonical 36-character form; returns nothing on bad input.
  static std::optional<event_id> parse(std::string_view text);

  /// Returns whether this is the nil id.
  bool is_nil() const noexcept;

  /// Returns the canonical lower-case 36-character form.
  std::string to_string() const;

  friend bool operator==(const event_id& x, const event_id& y) noexcept {
    return x.bytes == y.bytes;
  }
  friend bool operator!=(const event_id& x, const event_id& y) noexcept {
    return x.bytes != y.bytes;
  }
  friend bool operator<(const event_id& x, const event_id& y) noexcept {
    return x.bytes < y.bytes;
  }
};

}  // namespace mnemo::persistence
