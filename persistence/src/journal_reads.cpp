// Reads: of one stream, of all events in commit order (also inside a write
// transaction), of a tag's events, of stream heads, and the caller's own
// read transactions. Each runs in a read transaction of its own
// (`journal::impl::with_read`) under the shared side of `resize_mtx`, on
// any thread, except the `read_all_in(write_txn&, ...)` forms, which run in
// the caller's write transaction; none touches the writer's state. Owns no
// state.

#include "mnemo/persistence/journal.hpp"

#include <algorithm>
#include <map>

#include "head_log.hpp"
#include "journal_impl.hpp"
#include "record_codec.hpp"
#include "walk_stream.hpp"

namespace mnemo::persistence {

error journal::read(const read_function& fn) const {
  return impl_->with_read([&](detail::txn_state& st) {
    read_txn txn{st};
    return fn(txn);
  });
}

expected<stream_head> journal::head_of(std::string_view stream) const {
  if (auto err = check_name(stream, "stream id")) return err;
  head_record head;
  if (auto err = impl_->with_read(
          [&](detail::txn_state& st) { return read_head(st, stream, head); }))
    return err;
  return stream_head{std::string{stream}, head.highest, head.deleted_to};
}

expected<uint64_t> journal::highest_sequence(std::string_view stream) const {
  auto head = head_of(stream);
  if (!head) return std::move(head).error();
  return head->highest_sequence;
}

expected<std::vector<event_envelope>> journal::read_stream(
    std::string_view stream, uint64_t from, uint64_t to, uint64_t max) const {
  if (auto err = check_name(stream, "stream id")) return err;
  std::vector<event_envelope> result;
  if (max == 0 || from > to) return result;
  auto err = impl_->with_read([&](detail::txn_state& st) -> error {
    head_record head;
    if (auto err = read_head(st, stream, head)) return err;
    auto first = std::max({from, head.deleted_to + 1, uint64_t{1}});
    auto last = std::min(to, head.highest);
    if (first > last) return {};
    if (last - first >= max) last = first + max - 1;
    // The walk goes newest first: fill the result from the back.
    result.resize(static_cast<size_t>(last - first + 1));
    msgpack::zone zone;
    return walk_stream(st, stream, head, first, last,
                       [&](uint64_t seq, uint64_t pos, std::string_view rec) {
                         return decode_event(rec,
                                             record_origin{stream, seq, pos},
                                             zone, result[seq - first]);
                       });
  });
  if (err) return err;
  return result;
}

namespace {

// Reads events at the positions produced by `next_position` until it returns
// 0 or `max` events are collected.
template <class Next>
error collect(size_t max, Next&& next_position,
              std::vector<event_envelope>& out) {
  msgpack::zone zone;
  while (out.size() < max) {
    uint64_t pos = 0;
    MDB_val rec;
    if (auto err = next_position(pos, rec)) return err;
    if (pos == 0) return {};
    auto& env = out.emplace_back();
    if (auto err =
            decode_event(to_view(rec), record_origin{{}, 0, pos}, zone, env))
      return err;
  }
  return {};
}

}  // namespace

error read_all_at(detail::txn_state& st, uint64_t from_position, size_t max,
                  std::vector<event_envelope>& out) {
  cursor cur;
  if (auto err = cur.open(st, st.dbs->events)) return err;
  be64_key start{from_position};
  MDB_val key = start.val();
  auto op = MDB_SET_RANGE;
  return collect(
      out.size() + max,
      [&](uint64_t& pos, MDB_val& rec) -> error {
        auto rc = cur.get(key, rec, op);
        op = MDB_NEXT;
        if (rc == MDB_NOTFOUND) return {};
        if (auto err = st.check(rc, "mdb_cursor_get (events)")) return err;
        pos = get_be64(static_cast<const char*>(key.mv_data));
        return {};
      },
      out);
}

expected<std::vector<event_envelope>> journal::read_all(uint64_t from_position,
                                                        size_t max) const {
  std::vector<event_envelope> result;
  if (max == 0) return result;
  auto head = impl_->head.load(std::memory_order_acquire);
  if (from_position <= head)
    result.reserve(static_cast<size_t>(
        std::min<uint64_t>({max, head - from_position + 1, 65536})));
  auto err = impl_->with_read([&](detail::txn_state& st) {
    return read_all_at(st, from_position, max, result);
  });
  if (err) return err;
  return result;
}

expected<std::vector<event_envelope>> journal::read_all_in(
    write_txn& txn, uint64_t from_position, size_t max) {
  std::vector<event_envelope> result;
  if (max == 0) return result;
  if (auto err = read_all_at(txn.state(), from_position, max, result))
    return err;
  return result;
}

expected<journal::filtered_events> journal::read_all_in(
    write_txn& txn, uint64_t from_position, size_t max,
    std::string_view stream_prefix) {
  filtered_events out;
  if (max == 0) return out;
  auto& st = txn.state();
  cursor cur;
  if (auto err = cur.open(st, st.dbs->events)) return err;
  be64_key start{from_position};
  MDB_val key = start.val();
  auto op = MDB_SET_RANGE;
  msgpack::zone zone;
  while (out.scanned < max) {
    MDB_val rec;
    auto rc = cur.get(key, rec, op);
    op = MDB_NEXT;
    if (rc == MDB_NOTFOUND) break;
    if (auto err = st.check(rc, "mdb_cursor_get (events)")) return err;
    auto pos = get_be64(static_cast<const char*>(key.mv_data));
    ++out.scanned;
    out.last_position = pos;
    record_origin origin{{}, 0, pos};
    std::string_view stream;
    if (auto err = peek_event_stream(to_view(rec), origin, stream)) return err;
    if (stream.substr(0, stream_prefix.size()) != stream_prefix) continue;
    auto& env = out.events.emplace_back();
    if (auto err = decode_event(to_view(rec), origin, zone, env)) return err;
  }
  return out;
}

expected<std::vector<event_envelope>> journal::read_tag(std::string_view tag,
                                                        uint64_t from_position,
                                                        size_t max) const {
  if (auto err = check_name(tag, "tag")) return err;
  std::vector<event_envelope> result;
  if (max == 0) return result;
  auto err = impl_->with_read([&](detail::txn_state& st) -> error {
    cursor cur;
    if (auto err = cur.open(st, st.dbs->tags)) return err;
    auto start = name_key(tag, from_position);
    MDB_val key = to_val(start);
    MDB_val unused;
    auto op = MDB_SET_RANGE;
    return collect(
        max,
        [&](uint64_t& pos, MDB_val& rec) -> error {
          auto rc = cur.get(key, unused, op);
          op = MDB_NEXT;
          if (rc == MDB_NOTFOUND) return {};
          if (auto err = st.check(rc, "mdb_cursor_get (tags)")) return err;
          if (!has_name(to_view(key), tag)) return {};
          auto p = key_number(to_view(key));
          be64_key pkey{p};
          auto v = pkey.val();
          auto rc2 = mdb_get(st.txn, st.dbs->events, &v, &rec);
          if (rc2 == MDB_NOTFOUND)
            return error{errc::corrupt_record,
                         "corrupt journal: tag '" + std::string{tag} +
                             "' points to missing global position " +
                             std::to_string(p)};
          if (auto err = st.check(rc2, "mdb_get (event)")) return err;
          pos = p;
          return {};
        },
        result);
  });
  if (err) return err;
  return result;
}

expected<std::vector<stream_head>> journal::list_streams(std::string_view after,
                                                         size_t max) const {
  std::vector<stream_head> result;
  if (max == 0) return result;
  auto err = impl_->with_read([&](detail::txn_state& st) -> error {
    // The heads in mnemo.streams, overridden by newer ones in the head log
    // (which also has streams created since it was last folded in).
    std::map<std::string, head_record, std::less<>> logged;
    if (auto err = read_head_log(st, logged)) return err;
    auto next_logged = logged.upper_bound(after);
    auto emit = [&](std::string_view stream, const head_record& head) {
      result.push_back(
          stream_head{std::string{stream}, head.highest, head.deleted_to});
    };
    cursor cur;
    if (auto err = cur.open(st, st.dbs->streams)) return err;
    MDB_val key = to_val(after);
    MDB_val val;
    auto rc = after.empty() ? cur.get(key, val, MDB_FIRST)
                            : cur.get(key, val, MDB_SET_RANGE);
    for (; rc == 0 && result.size() < max; rc = cur.get(key, val, MDB_NEXT)) {
      auto stream = to_view(key);
      if (stream == after) continue;
      for (; next_logged != logged.end() && next_logged->first < stream &&
             result.size() < max;
           ++next_logged)
        emit(next_logged->first, next_logged->second);
      if (result.size() == max) break;
      if (next_logged != logged.end() && next_logged->first == stream) {
        emit(stream, next_logged->second);
        ++next_logged;
        continue;
      }
      head_record head;
      if (!decode_head(val, head)) return corrupt_head(stream);
      emit(stream, head);
    }
    if (rc != MDB_NOTFOUND && rc != 0)
      return st.check(rc, "mdb_cursor_get (streams)");
    for (; next_logged != logged.end() && result.size() < max; ++next_logged)
      emit(next_logged->first, next_logged->second);
    return {};
  });
  if (err) return err;
  return result;
}

}  // namespace mnemo::persistence
