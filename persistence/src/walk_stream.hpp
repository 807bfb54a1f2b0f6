#pragma once

// Private: walking a stream's events newest first along their back links
// (docs/format.md, 2.3), for reads, exports and deletions.

#include <string>
#include <string_view>

#include "head_record.hpp"
#include "lmdb_util.hpp"
#include "record_codec.hpp"

namespace mnemo::persistence {

/// Calls `visit(sequence, position, record)` for the events of `stream` with
/// sequence in [first, last], newest first, following the back links from
/// the nearest checkpoint at or above `last`. Preconditions: `head` is the
/// stream's head, `head.deleted_to < first <= last <= head.highest`.
/// Errors: `corrupt_record` (broken link or record), `storage_error`.
template <class Visit>
error walk_stream(detail::txn_state& st, std::string_view stream,
                  const head_record& head, uint64_t first, uint64_t last,
                  Visit&& visit) {
  auto broken = [&](uint64_t seq, const std::string& what) {
    return error{errc::corrupt_record,
                 "corrupt journal: stream '" + std::string{stream} +
                     "' at sequence " + std::to_string(seq) + ": " + what +
                     "; restore the data directory from a backup"};
  };
  auto seq = head.highest;
  auto pos = head.last_position;
  auto checkpoint = (last + checkpoint_interval - 1) / checkpoint_interval *
                    checkpoint_interval;
  if (checkpoint < head.highest) {
    auto key_bytes = name_key(stream, checkpoint);
    MDB_val key = to_val(key_bytes);
    MDB_val val;
    auto rc = mdb_get(st.txn, st.dbs->stream_index, &key, &val);
    if (rc == MDB_NOTFOUND || (rc == 0 && val.mv_size != 8))
      return broken(checkpoint, "stream index entry missing");
    if (auto err = st.check(rc, "mdb_get (stream index)")) return err;
    seq = checkpoint;
    pos = get_be64(static_cast<const char*>(val.mv_data));
  }
  cursor cur;
  if (auto err = cur.open(st, st.dbs->events)) return err;
  for (;;) {
    be64_key pkey{pos};
    MDB_val key = pkey.val();
    MDB_val rec;
    auto rc = cur.get(key, rec, MDB_SET_KEY);
    if (rc == MDB_NOTFOUND)
      return broken(seq,
                    "global position " + std::to_string(pos) + " is missing");
    if (auto err = st.check(rc, "mdb_cursor_get (events)")) return err;
    record_origin origin{stream, seq, pos};
    auto view = to_view(rec);
    uint64_t previous = 0;
    // `visit` verifies the records it is given; the others are checked here.
    if (seq <= last) {
      if (auto err = visit(seq, pos, view)) return err;
      previous = get_be64(view.data() + 21);
    } else if (auto err = peek_event(view, origin, previous)) {
      return err;
    }
    if (seq == first) return {};
    if (previous == 0 || previous >= pos)
      return broken(seq, "broken link to the previous event");
    pos = previous;
    --seq;
  }
}

}  // namespace mnemo::persistence
