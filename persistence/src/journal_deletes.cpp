// Deletions of a stream's events (`journal::delete_events_to`,
// docs/format.md 5): queued like appends, applied in the group commit by
// walking the stream over the deleted range and removing each event with
// its tag and checkpoint entries; the event ids stay. The same request
// releases a stream (`journal::release_stream`, stream_move.cpp): it marks
// the stream moved, drops its snapshots and counts the release first.
//
// Owns no state of journal::impl; sets the stream's head through the cached
// heads (head_cache.cpp). Invariant: a stream's events <= `deleted_to` are
// gone, all in the commit that raises `deleted_to`.

#include "mnemo/persistence/journal.hpp"

#include <algorithm>
#include <cstdlib>

#include "journal_impl.hpp"
#include "mnemo/persistence/table_store.hpp"
#include "record_codec.hpp"
#include "walk_stream.hpp"

namespace mnemo::persistence {

void journal::delete_events_to(std::string stream, uint64_t to_sequence,
                               write_handler done) {
  if (auto err = check_name(stream, "stream id")) return done(std::move(err));
  if (impl_->cfg.shard_of)
    if (auto shard = impl_->cfg.shard_of(stream))
      // Its events are records of the shard's log, which replicas ship and
      // compare from position 1: a hole there could not be shipped.
      return done(error{errc::invalid_argument,
                        "cannot delete events of stream '" + stream +
                            "': it belongs to shard " + std::to_string(*shard) +
                            ", whose log is replicated whole"});
  impl_->enqueue(
      delete_request{std::move(stream), to_sequence, std::move(done), {}});
}

error journal::delete_events_to(std::string stream, uint64_t to_sequence) {
  return blocking([&](write_handler done) {
    delete_events_to(std::move(stream), to_sequence, std::move(done));
  });
}

int journal::impl::apply(detail::txn_state& st, delete_request& req,
                         outcome& out, uint64_t&, int64_t) {
  cached_head* entry = nullptr;
  error head_err;
  if (auto rc = load_head(st, req.stream, entry, head_err)) return rc;
  if (head_err) {
    out = std::move(head_err);
    return 0;
  }
  auto head_rec = entry->pending;
  if (!req.moved_to.empty() && head_rec.highest == 0) {
    out = error{errc::not_found, "cannot release stream '" + req.stream +
                                     "': this journal does not have it"};
    return 0;
  }
  if (!req.moved_to.empty() && !head_rec.moved) {
    // Releasing: mark the stream moved, drop its snapshots, count the
    // release; the events go below, all in this one commit.
    write_txn txn{st};
    auto err = table_store::put_in(txn, moved_table, req.stream, req.moved_to);
    if (!err) {
      auto generation =
          table_store::get_in(txn, journal_table, release_generation_key);
      if (!generation) {
        err = generation.error();
      } else {
        auto next =
            (*generation ? std::strtoull((*generation)->c_str(), nullptr, 10)
                         : 0) +
            1;
        err = table_store::put_in(txn, journal_table, release_generation_key,
                                  std::to_string(next));
      }
    }
    if (!err)
      err = snapshot_store::remove_in(txn, req.stream,
                                      snapshot_criteria::latest());
    if (st.fatal_rc != 0) return st.fatal_rc;
    if (err) {
      out = std::move(err);
      return 0;
    }
    head_rec.moved = true;
    heads.store(*entry, head_rec);
  }
  auto to = std::min(req.to_sequence, head_rec.highest);
  if (to <= head_rec.deleted_to) return 0;
  // Collect first, delete after: the walk needs the links it would delete.
  struct doomed {
    uint64_t seq;
    uint64_t pos;
    std::vector<std::string> tags;
  };
  std::vector<doomed> victims;
  msgpack::zone zone;
  std::string stream;
  auto err = walk_stream(st, req.stream, head_rec, head_rec.deleted_to + 1, to,
                         [&](uint64_t seq, uint64_t pos, std::string_view rec) {
                           auto& v = victims.emplace_back(doomed{seq, pos, {}});
                           return decode_event_keys(
                               rec, record_origin{req.stream, seq, pos}, zone,
                               stream, v.tags);
                         });
  if (st.fatal_rc != 0) return st.fatal_rc;
  if (err) {
    out = std::move(err);
    return 0;
  }
  for (auto& v : victims)
    if (auto rc = remove_event(st, req.stream, v.seq, v.pos, v.tags)) return rc;
  head_rec.deleted_to = to;
  heads.store(*entry, head_rec);
  return 0;
}

int journal::impl::remove_event(detail::txn_state& st, std::string_view stream,
                                uint64_t seq, uint64_t pos,
                                const std::vector<std::string>& tags) {
  for (auto& tag : tags) {
    auto tkey_bytes = name_key(tag, pos);
    MDB_val tkey = to_val(tkey_bytes);
    auto rc = mdb_del(st.txn, dbs.tags, &tkey, nullptr);
    if (rc != 0 && rc != MDB_NOTFOUND) return rc;
  }
  be64_key pkey{pos};
  MDB_val key = pkey.val();
  if (auto rc = mdb_del(st.txn, dbs.events, &key, nullptr)) return rc;
  if (seq % legacy_checkpoint_interval == 0) {
    auto ikey_bytes = name_key(stream, seq);
    MDB_val ikey = to_val(ikey_bytes);
    auto rc = mdb_del(st.txn, dbs.stream_index, &ikey, nullptr);
    if (rc != 0 && rc != MDB_NOTFOUND) return rc;
  }
  return 0;
}

}  // namespace mnemo::persistence
