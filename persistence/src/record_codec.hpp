#pragma once

// Private: the on-disk layout of event and snapshot records
// (docs/format.md). A record is
//   u32 crc32 (little endian) over all following bytes
//   u8  record kind (1 = event, 2 = snapshot)
//   u64 big-endian sequence
//   i64 big-endian timestamp (microseconds since the Unix epoch)
//   u64 big-endian global position of the previous event of the same
//       stream (0 for the first event, and for snapshots)
//   msgpack array body
// The body of an event does not depend on the header fields, so callers
// encode it on their own thread and the writer only adds the header.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <msgpack.hpp>

#include "mnemo/persistence/error.hpp"
#include "mnemo/persistence/event_envelope.hpp"
#include "mnemo/persistence/snapshot_store.hpp"

namespace mnemo::persistence {

constexpr size_t record_header_size = 29;
constexpr uint8_t event_record_kind = 1;
constexpr uint8_t snapshot_record_kind = 2;

/// Returns an upper bound of the size `encode_event_body` appends for `ev`.
size_t event_body_size_bound(std::string_view stream,
                             const new_event& ev) noexcept;

/// Appends the msgpack body of `ev` (as written to `stream`) to `out`.
void encode_event_body(std::string_view stream, const new_event& ev,
                       std::string& out);

/// Writes header and checksum into `out`, which must hold
/// `record_header_size` bytes followed by the body.
void seal_record(char* out, size_t size, uint8_t kind, uint64_t sequence,
                 int64_t timestamp_us, uint64_t previous) noexcept;

/// Where a record came from, for error messages.
struct record_origin {
  /// Stream the index says the record belongs to; empty when read by
  /// position only.
  std::string_view stream;
  /// Sequence the index says; 0 when read by position only.
  uint64_t sequence = 0;
  /// Global position (events) or 0 (snapshots).
  uint64_t position = 0;
};

/// Decodes an event record. Verifies checksum, kind, and that stream and
/// sequence match `origin` when it names them. `zone` is scratch memory the
/// caller may reuse across calls. Errors: `corrupt_record` naming stream,
/// sequence and position.
error decode_event(std::string_view record, const record_origin& origin,
                   msgpack::zone& zone, event_envelope& out);

/// Returns the position of the previous event of the stream from an event
/// record that a read only passes through. Checks size, kind and sequence
/// but not the checksum: a damaged link leads to a record whose sequence or
/// stream does not match, which the fully verified records catch, so damage
/// yields an error, never wrong data; and a damaged payload does not fail
/// reads that do not return it. Errors: `corrupt_record`.
error peek_event(std::string_view record, const record_origin& origin,
                 uint64_t& previous);

/// Verifies an event record like `decode_event` (size, checksum, kind and
/// the sequence of `origin` if named) and returns its stream id, a view
/// into `record`, without decoding the rest. Errors: `corrupt_record`.
error peek_event_stream(std::string_view record, const record_origin& origin,
                        std::string_view& stream);

/// Returns stream id and tags of an event record without a full decode
/// (used when deleting). Errors: as for `decode_event`.
error decode_event_keys(std::string_view record, const record_origin& origin,
                        msgpack::zone& zone, std::string& stream,
                        std::vector<std::string>& tags);

/// Encodes a full snapshot record.
std::string encode_snapshot(const snapshot& snap);

/// Decodes a snapshot record; errors as for `decode_event`.
error decode_snapshot(std::string_view record, const record_origin& origin,
                      snapshot& out);

/// A snapshot of a shard's stream travels in the shard's log as an event of
/// this type in the shard's own stream (`shard_stream`), so that every
/// replica stores it (docs/format.md 2.10, docs/replication.md).
constexpr std::string_view shard_snapshot_type = "mnemo.snapshot";

/// The stream of a shard's own records: epoch markers and snapshots.
std::string shard_stream(uint32_t shard);

/// The payload of a `shard_snapshot_type` event: a msgpack map of the
/// snapshot's fields (`stream`, `sequence`, `timestamp_us`, `type`,
/// `schema_version`, `metadata`, `payload`) and `keep`, how many snapshots
/// of the stream every replica keeps after storing it (0: all).
std::vector<uint8_t> encode_shard_snapshot(const snapshot& snap,
                                           uint64_t keep);

/// Decodes such a payload. Unknown keys are ignored; a missing or mistyped
/// one, or bytes that are not one msgpack map, are `corrupt_record`.
error decode_shard_snapshot(const std::vector<uint8_t>& payload,
                            snapshot& out, uint64_t& keep);

}  // namespace mnemo::persistence
