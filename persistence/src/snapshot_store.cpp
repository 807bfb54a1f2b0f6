#include "mnemo/persistence/snapshot_store.hpp"

#include "journal_impl.hpp"
#include "mnemo/persistence/journal.hpp"
#include "record_codec.hpp"

namespace mnemo::persistence {

namespace {

int64_t header_timestamp(const MDB_val& val) noexcept {
  if (val.mv_size < record_header_size) return 0;
  return static_cast<int64_t>(
      get_be64(static_cast<const char*>(val.mv_data) + 13));
}

// Calls `f(key, val)` for each snapshot of `stream` from the newest
// (highest sequence <= `max_seq`) backwards while `f` returns true.
template <class F>
error for_each_newest_first(detail::txn_state& st, std::string_view stream,
                            uint64_t max_seq, F&& f) {
  cursor cur;
  if (auto err = cur.open(st, st.dbs->snapshots)) return err;
  auto start = name_key(stream, max_seq);
  MDB_val key = to_val(start);
  MDB_val val;
  auto rc = cur.get(key, val, MDB_SET_RANGE);
  if (rc == MDB_NOTFOUND)
    rc = cur.get(key, val, MDB_LAST);
  else if (rc == 0 && to_view(key) != std::string_view{start})
    rc = cur.get(key, val, MDB_PREV);
  for (; rc == 0; rc = cur.get(key, val, MDB_PREV)) {
    auto k = to_view(key);
    if (!has_name(k, stream)) return {};
    if (!f(k, val)) return {};
  }
  if (rc != MDB_NOTFOUND) return st.check(rc, "mdb_cursor_get (snapshots)");
  return {};
}

// Deletes the snapshots of `stream` for which `pred(index, seq, ts)` holds;
// `index` counts from the newest (0).
template <class Pred>
error delete_if(write_txn& txn, std::string_view stream, Pred&& pred) {
  auto& st = txn.state();
  std::vector<std::string> doomed;
  size_t index = 0;
  auto err = for_each_newest_first(
      st, stream, std::numeric_limits<uint64_t>::max(),
      [&](std::string_view key, const MDB_val& val) {
        if (pred(index++, key_number(key), header_timestamp(val)))
          doomed.emplace_back(key);
        return true;
      });
  if (err) return err;
  for (auto& k : doomed) {
    auto key = to_val(k);
    auto rc = mdb_del(st.txn, st.dbs->snapshots, &key, nullptr);
    if (rc != MDB_NOTFOUND)
      if (auto err2 = st.check(rc, "mdb_del (snapshot)")) return err2;
  }
  return {};
}

// Checks what `save` and `save_in` refuse; stamps a zero timestamp.
error check_snapshot(snapshot& snap) {
  if (auto err = check_name(snap.meta.stream_id, "stream id")) return err;
  // Selection criteria start at timestamp 0 (`latest()` included): a
  // snapshot from before it could be stored but never selected.
  if (snap.meta.timestamp_us < 0)
    return error{errc::invalid_argument,
                 "snapshot of stream '" + snap.meta.stream_id +
                     "' at sequence " + std::to_string(snap.meta.sequence) +
                     " has a negative timestamp (" +
                     std::to_string(snap.meta.timestamp_us) +
                     " us); use microseconds since the Unix epoch, or 0 "
                     "for now"};
  if (snap.meta.timestamp_us == 0) snap.meta.timestamp_us = now_micros();
  return {};
}

}  // namespace

error snapshot_store::save_in(write_txn& txn, snapshot snap) {
  if (auto err = check_snapshot(snap)) return err;
  auto& st = txn.state();
  auto key_bytes = name_key(snap.meta.stream_id, snap.meta.sequence);
  auto record = encode_snapshot(snap);
  auto key = to_val(key_bytes);
  auto val = to_val(record);
  return st.check(mdb_put(st.txn, st.dbs->snapshots, &key, &val, 0),
                  "mdb_put (snapshot)");
}

void snapshot_store::save(snapshot snap, size_t keep, write_handler done) {
  if (auto err = check_snapshot(snap)) return done(std::move(err));
  auto& cfg = journal_->impl_->cfg;
  std::optional<uint32_t> shard;
  if (cfg.shard_of) shard = cfg.shard_of(snap.meta.stream_id);
  // A snapshot too large for a shard record (its state, metadata and the
  // record's envelope of a few hundred bytes) is stored here only.
  auto size_bound = record_header_size + snap.payload.size() +
                    snap.meta.stream_id.size() + snap.type.size() + 512;
  for (auto& [k, v] : snap.metadata) size_bound += k.size() + v.size() + 10;
  auto limit = cfg.max_shard_record_bytes;
  if (shard && (limit == 0 || size_bound <= limit))
    return journal_->append_snapshot(*shard, std::move(snap), keep,
                                     std::move(done));
  journal_->write(
      [snap = std::move(snap), keep](write_txn& txn) mutable {
        auto stream = snap.meta.stream_id;
        if (auto err = save_in(txn, std::move(snap))) return err;
        return keep == 0 ? error{} : retain_in(txn, stream, keep);
      },
      std::move(done));
}

error snapshot_store::save(snapshot snap) {
  std::promise<error> promise;
  auto future = promise.get_future();
  save(std::move(snap), 0,
       [&promise](error err) { promise.set_value(std::move(err)); });
  return future.get();
}

expected<std::optional<snapshot>> snapshot_store::load_in(
    read_txn& txn, std::string_view stream, const snapshot_criteria& criteria) {
  if (auto err = check_name(stream, "stream id")) return err;
  std::optional<snapshot> result;
  error decode_err;
  auto err = for_each_newest_first(
      txn.state(), stream, criteria.max_sequence,
      [&](std::string_view key, const MDB_val& val) {
        auto seq = key_number(key);
        if (seq < criteria.min_sequence) return false;
        auto ts = header_timestamp(val);
        if (ts < criteria.min_timestamp_us || ts > criteria.max_timestamp_us)
          return true;
        snapshot snap;
        decode_err =
            decode_snapshot(to_view(val), record_origin{stream, seq, 0}, snap);
        if (!decode_err) result = std::move(snap);
        return false;
      });
  if (err) return err;
  if (decode_err) return decode_err;
  return result;
}

expected<std::optional<snapshot>> snapshot_store::load(
    std::string_view stream, const snapshot_criteria& criteria) const {
  expected<std::optional<snapshot>> result{std::nullopt};
  auto err = journal_->read([&](read_txn& txn) {
    result = load_in(txn, stream, criteria);
    return error{};
  });
  if (err) return err;
  return result;
}

error snapshot_store::remove(std::string_view stream, uint64_t sequence) {
  if (auto err = check_name(stream, "stream id")) return err;
  auto key_bytes = name_key(stream, sequence);
  return journal_->write([&key_bytes](write_txn& txn) {
    auto& st = txn.state();
    auto key = to_val(key_bytes);
    auto rc = mdb_del(st.txn, st.dbs->snapshots, &key, nullptr);
    return rc == MDB_NOTFOUND ? error{} : st.check(rc, "mdb_del (snapshot)");
  });
}

error snapshot_store::remove_in(write_txn& txn, std::string_view stream,
                                const snapshot_criteria& criteria) {
  if (auto err = check_name(stream, "stream id")) return err;
  return delete_if(txn, stream, [&](size_t, uint64_t seq, int64_t ts) {
    return criteria.matches(snapshot_metadata{{}, seq, ts});
  });
}

error snapshot_store::remove(std::string_view stream,
                             const snapshot_criteria& criteria) {
  return journal_->write(
      [&](write_txn& txn) { return remove_in(txn, stream, criteria); });
}

error snapshot_store::retain_in(write_txn& txn, std::string_view stream,
                                size_t keep) {
  if (auto err = check_name(stream, "stream id")) return err;
  return delete_if(txn, stream, [keep](size_t index, uint64_t, int64_t) {
    return index >= keep;
  });
}

error snapshot_store::retain(std::string_view stream, size_t keep) {
  return journal_->write(
      [&](write_txn& txn) { return retain_in(txn, stream, keep); });
}

expected<std::vector<snapshot_metadata>> snapshot_store::list(
    std::string_view stream) const {
  if (auto err = check_name(stream, "stream id")) return err;
  std::vector<snapshot_metadata> result;
  auto err = journal_->read([&](read_txn& txn) {
    return for_each_newest_first(
        txn.state(), stream, std::numeric_limits<uint64_t>::max(),
        [&](std::string_view key, const MDB_val& val) {
          result.push_back(snapshot_metadata{
              std::string{stream}, key_number(key), header_timestamp(val)});
          return true;
        });
  });
  if (err) return err;
  std::reverse(result.begin(), result.end());
  return result;
}

expected<std::vector<snapshot_metadata>> snapshot_store::list_all(
    std::string_view after_stream, uint64_t after_sequence, size_t max) const {
  std::vector<snapshot_metadata> result;
  if (max == 0) return result;
  auto err = journal_->read([&](read_txn& txn) -> error {
    auto& st = txn.state();
    cursor cur;
    if (auto err = cur.open(st, st.dbs->snapshots)) return err;
    auto start = name_key(after_stream, after_sequence);
    MDB_val key = to_val(start);
    MDB_val val;
    auto rc = after_stream.empty() ? cur.get(key, val, MDB_FIRST)
                                   : cur.get(key, val, MDB_SET_RANGE);
    for (; rc == 0 && result.size() < max; rc = cur.get(key, val, MDB_NEXT)) {
      auto k = to_view(key);
      if (k == std::string_view{start} || k.size() < 9) continue;
      result.push_back(snapshot_metadata{std::string{k.substr(0, k.size() - 9)},
                                         key_number(k), header_timestamp(val)});
    }
    if (rc != 0 && rc != MDB_NOTFOUND)
      return st.check(rc, "mdb_cursor_get (snapshots)");
    return {};
  });
  if (err) return err;
  return result;
}

}  // namespace mnemo::persistence
