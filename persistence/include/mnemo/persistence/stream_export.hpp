#pragma once

// Streams as they move between journals: when a cluster's membership
// changes, the streams whose owner changes leave one node's journal
// (`journal::export_stream`, then `journal::release_stream`) and enter
// another's (`journal::import_stream`). A bundle carries many of them as
// one checksummed file (docs/cluster.md, "Changing the members").

#include <string>
#include <string_view>
#include <vector>

#include "mnemo/persistence/error.hpp"
#include "mnemo/persistence/event_envelope.hpp"
#include "mnemo/persistence/journal.hpp"
#include "mnemo/persistence/snapshot_store.hpp"

namespace mnemo::persistence {

/// Everything a journal holds of one stream.
struct stream_export {
  /// Stream id, highest sequence ever written and deletion mark.
  stream_head head;
  /// The events with sequences `head.deleted_to + 1 .. head.highest_sequence`
  /// in order, with their original ids, timestamps and positions (the
  /// positions are the source's; an import assigns new ones).
  std::vector<event_envelope> events;
  /// The stream's snapshots, oldest first.
  std::vector<snapshot> snapshots;
};

/// Many exported streams plus free-form labels (the cluster tool records
/// source, destination and the new member list there).
struct stream_bundle {
  event_metadata labels;
  std::vector<stream_export> streams;
};

/// Encodes `bundle`: a magic line, a format version, a CRC-32 and a msgpack
/// body.
std::string encode_bundle(const stream_bundle& bundle);

/// Decodes a bundle. Errors: `format_mismatch` (not a bundle, another
/// format version), `corrupt_record` (checksum or shape wrong: the file
/// was damaged or cut short).
expected<stream_bundle> decode_bundle(std::string_view bytes);

/// Encodes one event with every field (stream id, sequence, position, id,
/// type, schema version, commit time, correlation and causation ids, tags,
/// metadata, payload) as a msgpack array, the body format of a bundle's
/// events with the stream id first. For events kept outside their journal,
/// e.g. the saga inbox rows of a replicated cluster (docs/sagas.md).
std::string encode_event(const event_envelope& event);

/// Decodes an `encode_event` result. Errors: `corrupt_record` (not an
/// encoded event, or cut short).
expected<event_envelope> decode_event(std::string_view bytes);

}  // namespace mnemo::persistence
