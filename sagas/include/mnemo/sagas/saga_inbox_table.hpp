#pragma once

// The inbox table of a saga type and its keys: "event at position P of
// source Q for saga X", written by the router (saga_inbox.hpp), delivered by the inbox
// relay, and read by the saga itself when it starts or recovers, so that
// the events that reached its inbox before it existed are not left behind.

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace mnemo::sagas {

/// Returns the inbox table of saga type `S`.
template <class S>
std::string inbox_table() {
  return std::string{"mnemo.saga_inbox."} + S::type_name;
}

namespace detail {

/// Inbox keys: saga id, NUL, position as 16 hex digits, then the source
/// of the event (nothing for the node's own journal, e.g. "shard/3" for a
/// shard log of a replicated cluster). Within one saga and one source the
/// keys are in commit order. A row of the node's own journal has an empty
/// value (the saga reads the event from the journal); a row of another
/// source holds the event itself (`persistence::encode_event`).
inline std::string inbox_key(const std::string& saga_id, uint64_t position,
                             const std::string& source = {}) {
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx",
                static_cast<unsigned long long>(position));
  std::string key = saga_id;
  key.push_back('\0');
  key.append(hex, 16);
  key.append(source);
  return key;
}

/// The prefix of every inbox key of `saga_id`.
inline std::string inbox_prefix(const std::string& saga_id) {
  std::string key = saga_id;
  key.push_back('\0');
  return key;
}

/// The smallest key after every inbox key of `saga_id` (the NUL after the
/// id becomes 0x01).
inline std::string inbox_end(const std::string& saga_id) {
  std::string key = saga_id;
  key.push_back('\x01');
  return key;
}

/// A parsed inbox key.
struct inbox_row {
  std::string saga_id;
  uint64_t position = 0;
  std::string source;
};

/// Parses an inbox key; nothing if it is not one. A source holds no NUL.
inline std::optional<inbox_row> parse_inbox_key(std::string_view key) {
  auto nul = key.rfind('\0');
  if (nul == std::string_view::npos || key.size() - nul - 1 < 16)
    return std::nullopt;
  uint64_t position = 0;
  for (auto c : key.substr(nul + 1, 16)) {
    int digit = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                       : -1;
    if (digit < 0) return std::nullopt;
    position = position * 16 + static_cast<uint64_t>(digit);
  }
  return inbox_row{std::string{key.substr(0, nul)}, position,
                   std::string{key.substr(nul + 17)}};
}

}  // namespace detail

}  // namespace mnemo::sagas
