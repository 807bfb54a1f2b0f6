#pragma once

// Private: the head record of a stream (docs/format.md, 2.3): its 24-byte
// encoding in mnemo.streams and mnemo.head_log, and how a reader finds the
// current one (the newest entry of the head log, else mnemo.streams). The
// writer's cache of heads is head_cache.hpp.

#include <cstdint>
#include <string_view>

#include <lmdb.h>

#include "lmdb_util.hpp"
#include "mnemo/persistence/error.hpp"

namespace mnemo::persistence {

/// The head record of a stream as stored in mnemo.streams.
struct head_record {
  uint64_t highest = 0;
  uint64_t deleted_to = 0;
  /// Global position of the event with sequence `highest`.
  uint64_t last_position = 0;
  /// Not stored in the record: whether `moved_table` marks the stream.
  bool moved = false;
};

/// Encodes a head record (24 bytes).
void encode_head(const head_record& head, char* out) noexcept;

/// Decodes a head record; false unless `val` has 24 bytes.
bool decode_head(const MDB_val& val, head_record& out) noexcept;

/// The error for a head record of `stream` that does not decode.
error corrupt_head(std::string_view stream);

/// Reads the head record of `stream` in `st`; zeroes if absent.
error read_head(detail::txn_state& st, std::string_view stream,
                head_record& out);

}  // namespace mnemo::persistence
