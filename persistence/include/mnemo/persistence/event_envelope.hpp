#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "mnemo/persistence/event_id.hpp"

namespace mnemo::persistence {

/// Free-form string metadata attached to an event (e.g. user, source).
using event_metadata = std::map<std::string, std::string>;

/// An event as the caller hands it to `journal::append`. The journal assigns
/// sequence, global position and timestamp.
struct new_event {
  /// Event id; nil (the default) lets the journal assign a UUID v7. An id
  /// that is already stored makes the append idempotent (see `journal`).
  event_id id;
  /// Registered event type name, e.g. "account.deposited".
  std::string type;
  /// Schema version of `payload`.
  uint32_t schema_version = 1;
  /// Payload: a msgpack map keyed by field name (see `event_registry`).
  std::vector<uint8_t> payload;
  /// Id of the command or message that caused the whole conversation.
  std::string correlation_id;
  /// Id of the message that directly caused this event.
  std::string causation_id;
  /// Tags for `journal::read_tag`; no NUL bytes, at most 400 bytes each.
  std::vector<std::string> tags;
  /// Free-form metadata.
  event_metadata metadata;
};

/// A stored event with everything the journal knows about it.
struct event_envelope {
  /// Unique event id (UUID v7 unless the writer supplied its own).
  event_id id;
  /// Stream the event belongs to, e.g. "account-42".
  std::string stream_id;
  /// Position within the stream: 1, 2, 3, ... without gaps.
  uint64_t sequence = 0;
  /// Position in the whole journal, commit-ordered and gap-free at append
  /// time (deleted events leave holes that readers simply skip).
  uint64_t position = 0;
  /// Registered event type name.
  std::string type;
  /// Schema version the payload was written with.
  uint32_t schema_version = 1;
  /// Commit time in microseconds since the Unix epoch.
  int64_t timestamp_us = 0;
  /// Correlation id (see `new_event`).
  std::string correlation_id;
  /// Causation id (see `new_event`).
  std::string causation_id;
  /// Tags.
  std::vector<std::string> tags;
  /// Free-form metadata.
  event_metadata metadata;
  /// Payload bytes: a msgpack map keyed by field name.
  std::vector<uint8_t> payload;
};

}  // namespace mnemo::persistence
