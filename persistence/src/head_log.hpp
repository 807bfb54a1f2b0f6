#pragma once

// Private: records of `mnemo.head_log` (docs/format.md, 2.3).
//
// A group commit that appends events stores the new heads of the streams it
// touched as one record of mnemo.head_log, keyed by the global position of
// its last event, instead of updating each head in mnemo.streams. Every few
// dozen commits the writer folds the log into mnemo.streams and empties it.
// A head is thus the newest entry for its stream in the log, or else its
// entry in mnemo.streams; both live in the same transaction as the events.
//
// A record: be32 count, `count` be32 offsets of the entries from the start
// of the record, then the entries in strictly increasing stream order (the
// order of LMDB's default key comparison): be16 length of the stream id,
// the stream id, the 24-byte head (as in mnemo.streams).

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "head_record.hpp"

namespace mnemo::persistence {

/// Size of a record holding `entries` entries whose stream ids have
/// `id_bytes` bytes in all.
constexpr size_t head_log_size(size_t entries, size_t id_bytes) noexcept {
  return 4 + entries * (4 + 2 + 24) + id_bytes;
}

/// Writes a record into `out` (`head_log_size` bytes): `next(i)` returns the
/// stream id and head of entry `i`, in increasing stream order.
template <class Next>
void encode_head_log(char* out, size_t entries, Next&& next) noexcept {
  auto put32 = [](char* p, uint32_t x) {
    for (int i = 3; i >= 0; --i, x >>= 8) p[i] = static_cast<char>(x & 0xff);
  };
  put32(out, static_cast<uint32_t>(entries));
  auto offset = 4 + entries * 4;
  for (size_t i = 0; i < entries; ++i) {
    const auto& [stream, head] = next(i);
    put32(out + 4 + i * 4, static_cast<uint32_t>(offset));
    auto* p = out + offset;
    p[0] = static_cast<char>(stream.size() >> 8);
    p[1] = static_cast<char>(stream.size() & 0xff);
    stream.copy(p + 2, stream.size());
    encode_head(head, p + 2 + stream.size());
    offset += 2 + stream.size() + 24;
  }
}

enum class head_log_lookup { found, absent, damaged };

/// Looks `stream` up in the record `data` by binary search. A record whose
/// structure does not hold together is `damaged`.
head_log_lookup find_in_head_log(const char* data, size_t size,
                                 std::string_view stream,
                                 head_record& out) noexcept;

/// The entries of a record, for reading them all.
struct head_log_entries {
  const char* data;
  size_t size;
  uint32_t count = 0;
  /// Checks the whole record and sets `count`; false if it is damaged
  /// (entries out of order, offsets or lengths outside the record).
  bool parse() noexcept;
  /// Entry `i` (requires a successful `parse()`).
  std::string_view stream(uint32_t i) const noexcept;
  head_record head(uint32_t i) const noexcept;
};

/// What a visitor of `visit_head_log` tells it to do next.
enum class log_visit { next, stop, damaged };

/// Calls `visit(data, size)` with the records of the log `dbi` in `txn`,
/// newest first, until it says stop or damaged. Returns the LMDB code: 0 at
/// the end or when stopped, MDB_CORRUPTED for a damaged record (a key that
/// is not 8 bytes, or the visitor's verdict), with `position` its key.
template <class Visit>
int visit_head_log(MDB_txn* txn, MDB_dbi dbi, uint64_t& position,
                   Visit&& visit) {
  MDB_cursor* cur = nullptr;
  if (auto rc = mdb_cursor_open(txn, dbi, &cur)) return rc;
  MDB_val key;
  MDB_val val;
  int rc = mdb_cursor_get(cur, &key, &val, MDB_LAST);
  for (; rc == 0; rc = mdb_cursor_get(cur, &key, &val, MDB_PREV)) {
    position =
        key.mv_size == 8 ? get_be64(static_cast<const char*>(key.mv_data)) : 0;
    auto next = key.mv_size == 8
                    ? visit(static_cast<const char*>(val.mv_data), val.mv_size)
                    : log_visit::damaged;
    if (next == log_visit::damaged) rc = MDB_CORRUPTED;
    if (next != log_visit::next) break;
  }
  mdb_cursor_close(cur);
  return rc == MDB_NOTFOUND ? 0 : rc;
}

/// Adds the newest head of each stream in the log `dbi` of `txn` to `out`
/// (a map from stream id to head) unless `out` has it already. Returns the
/// code of `visit_head_log`. The stream ids point into the log's pages.
template <class Map>
int collect_head_log(MDB_txn* txn, MDB_dbi dbi, uint64_t& position, Map& out) {
  return visit_head_log(txn, dbi, position, [&](const char* data, size_t size) {
    head_log_entries rec{data, size};
    if (!rec.parse()) return log_visit::damaged;
    for (uint32_t i = 0; i < rec.count; ++i)
      out.emplace(rec.stream(i), rec.head(i));  // keeps a newer one
    return log_visit::next;
  });
}

/// The error for a damaged record of mnemo.head_log with key `position`.
error damaged_head_log(uint64_t position);

/// The heads in the log of `st`, the newest per stream, in stream order.
/// Errors: `corrupt_record` (a damaged record), `storage_error`.
error read_head_log(detail::txn_state& st,
                    std::map<std::string, head_record, std::less<>>& out);

/// Looks the head of `stream` up in the log of `st`, newest record first;
/// `found` tells whether any record names it.
error find_logged_head(detail::txn_state& st, std::string_view stream,
                       head_record& out, bool& found);

}  // namespace mnemo::persistence
