// Appends: checking and encoding a caller's events into an append request
// (any thread), and applying it in the group commit (writer thread): the
// expected-version check, duplicate detection through the event-id index,
// the event records, checkpoints, tags, id index entries and shard log
// entries, and the stream's new head. Imports (stream_move.cpp) and shard
// snapshots (shard_snapshots.cpp) are appends with more to them.
//
// Owns no state of journal::impl; uses the writer's cursors
// (writer_loop.cpp), the cached heads (head_cache.cpp) and the shard ends
// (replica_log.cpp). Invariant: events get consecutive sequences after the
// stream's head and consecutive global positions after the journal's, each
// linked to the previous event of its stream.

#include "mnemo/persistence/journal.hpp"

#include <algorithm>
#include <cstring>
#include <future>

#include "journal_impl.hpp"
#include "mnemo/persistence/replica_log.hpp"
#include "record_codec.hpp"

namespace mnemo::persistence {

// Checks `events` and encodes them into `req` (whose stream is set).
error prepare_append(append_request& req, std::vector<new_event>& events) {
  size_t body_bound = 0;
  bool has_tags = false;
  for (auto& ev : events) {
    if (ev.type.empty())
      return error{
          errc::invalid_argument,
          "an event for stream '" + req.stream + "' has an empty type name"};
    for (auto& tag : ev.tags)
      if (auto err = check_name(tag, "tag")) return err;
    has_tags |= !ev.tags.empty();
    body_bound += event_body_size_bound(req.stream, ev);
  }
  // One allocation each, whatever the batch size.
  req.events.reserve(events.size());
  req.results.reserve(events.size());
  req.bodies.reserve(body_bound);
  if (has_tags) req.tags.reserve(events.size());
  for (auto& ev : events) {
    auto supplied = !ev.id.is_nil();
    if (!supplied) ev.id = event_id::make_v7();
    req.has_supplied_ids |= supplied;
    encode_event_body(req.stream, ev, req.bodies);
    req.events.push_back({ev.id, req.bodies.size(), supplied});
    if (has_tags) req.tags.push_back(std::move(ev.tags));
  }
  if (req.has_supplied_ids) {
    std::vector<event_id> sorted;
    sorted.reserve(req.events.size());
    for (auto& item : req.events) sorted.push_back(item.id);
    std::sort(sorted.begin(), sorted.end());
    auto dup = std::adjacent_find(sorted.begin(), sorted.end());
    if (dup != sorted.end())
      return error{errc::invalid_argument, "event id " + dup->to_string() +
                                               " appears twice in one batch"};
  }
  return {};
}

// Fails an append to a shard's log whose events would be records larger
// than `limit` (0: none).
error check_record_sizes(const append_request& req, size_t limit) {
  if (limit == 0 || req.shard == no_shard) return {};
  size_t begin = 0;
  for (size_t i = 0; i < req.events.size(); ++i) {
    auto size = record_header_size + req.events[i].body_end - begin;
    begin = req.events[i].body_end;
    if (size > limit)
      return error{errc::invalid_argument,
                   "event " + std::to_string(i + 1) + " of an append to '" +
                       req.stream + "' would be a record of " +
                       std::to_string(size) + " bytes; records of shard " +
                       std::to_string(req.shard) +
                       " travel to its other replicas in one message and "
                       "may have at most " +
                       std::to_string(limit) +
                       " (the cluster's max_message_bytes, less overhead)"};
  }
  return {};
}

// An append to a shard's log with a gate: asks it to admit `req` (in the
// epoch it names) and makes `done` wait until the shard's majority holds
// the append. Returns false, having failed `done`, if the gate refuses.
bool through_gate(const std::shared_ptr<replication_gate>& gate,
                  append_request& req, append_handler& done) {
  if (!gate || req.shard == no_shard) return true;
  auto epoch = gate->admit(req.shard);
  if (!epoch) {
    done(std::move(epoch).error());
    return false;
  }
  req.shard_epoch = *epoch;
  done = [gate, shard = req.shard, epoch = *epoch,
          done = std::move(done)](expected<append_result> res) mutable {
    if (!res) return done(std::move(res));
    auto position = res->shard_position;
    gate->wait_committed(
        shard, epoch, position,
        [res = std::move(res), done = std::move(done)](error err) mutable {
          if (err)
            done(std::move(err));
          else
            done(std::move(res));
        });
  };
  return true;
}

void journal::append(std::string stream, std::vector<new_event> events,
                     expected_version expected, append_handler done) {
  if (auto err = check_name(stream, "stream id")) return done(std::move(err));
  if (events.empty())
    return done(error{errc::invalid_argument,
                      "append to stream '" + stream + "' has no events"});
  append_request req;
  req.stream = std::move(stream);
  req.expected = expected;
  if (auto err = prepare_append(req, events)) return done(std::move(err));
  if (impl_->cfg.shard_of)
    if (auto shard = impl_->cfg.shard_of(req.stream)) req.shard = *shard;
  if (auto err = check_record_sizes(req, impl_->cfg.max_shard_record_bytes))
    return done(std::move(err));
  if (!through_gate(impl_->cfg.gate, req, done)) return;
  req.done = std::move(done);
  impl_->enqueue(std::move(req));
}

void journal::append_in_shard(std::string stream, std::vector<new_event> events,
                              uint32_t shard, append_handler done) {
  append_request req;
  req.stream = std::move(stream);
  if (auto err = prepare_append(req, events)) return done(std::move(err));
  req.shard = shard;
  req.done = std::move(done);
  impl_->enqueue(std::move(req));
}

expected<append_result> journal::append(std::string stream,
                                        std::vector<new_event> events,
                                        expected_version expect) {
  std::promise<expected<append_result>> promise;
  auto future = promise.get_future();
  append(std::move(stream), std::move(events), expect,
         [&promise](expected<append_result> res) {
           promise.set_value(std::move(res));
         });
  return future.get();
}

namespace {

const std::vector<std::string> no_tags;

// Event-id index value: be64 position, be64 sequence, stream id.
struct id_value {
  char bytes[16 + max_name_size];
  size_t size;
  id_value(uint64_t position, uint64_t sequence,
           std::string_view stream) noexcept
      : size(16 + stream.size()) {
    put_be64(bytes, position);
    put_be64(bytes + 8, sequence);
    std::memcpy(bytes + 16, stream.data(), stream.size());
  }
  MDB_val val() noexcept { return MDB_val{size, bytes}; }
};

// Checks stored ids of `req`: nothing stored -> continue; all stored, in
// this stream and order -> duplicate result; anything else -> error.
int check_duplicates(detail::txn_state& st, append_request& req, outcome& out,
                     bool& duplicate) {
  duplicate = false;
  append_result res;
  size_t found = 0;
  size_t supplied = 0;
  for (auto& item : req.events) {
    if (!item.supplied) continue;
    ++supplied;
    auto& id = item.id;
    MDB_val key{16, id.bytes.data()};
    MDB_val val;
    auto rc = mdb_get(st.txn, st.dbs->event_ids, &key, &val);
    if (rc == MDB_NOTFOUND) continue;
    if (rc != 0) return rc;
    ++found;
    auto v = to_view(val);
    if (v.size() < 16 || v.substr(16) != req.stream) {
      out = error{errc::duplicate_event_id,
                  "event id " + id.to_string() +
                      " is already stored in another stream; an append to '" +
                      req.stream + "' cannot reuse it"};
      return 0;
    }
    res.events.push_back(
        event_ref{id, get_be64(v.data() + 8), get_be64(v.data())});
  }
  if (found == 0) return 0;
  // Ids made by the journal are new, so only an all-supplied batch can be
  // an exact retry.
  bool in_order = found == req.events.size() && supplied == found;
  for (size_t i = 1; in_order && i < res.events.size(); ++i)
    in_order = res.events[i].sequence == res.events[i - 1].sequence + 1;
  if (!in_order) {
    out = error{errc::duplicate_event_id,
                std::to_string(found) + " of " +
                    std::to_string(req.events.size()) +
                    " event ids of an append to '" + req.stream +
                    "' are already stored, but not as this exact batch; "
                    "retry with the original batch or new ids"};
    return 0;
  }
  duplicate = true;
  res.duplicate = true;
  out = std::move(res);
  return 0;
}

}  // namespace

int journal::impl::put_event_id(MDB_val& key, MDB_val& val) {
  // Ids are time-ordered (UUID v7), so almost every new id sorts after all
  // stored ones: MDB_APPEND then fills pages completely and skips the key
  // search. An id that does not (supplied by the caller, or made by another
  // thread a moment earlier) gets LMDB's rejection, which changes nothing,
  // and a normal insert.
  auto rc = mdb_cursor_put(event_ids_cursor, &key, &val, MDB_APPEND);
  if (rc == MDB_KEYEXIST) rc = mdb_cursor_put(event_ids_cursor, &key, &val, 0);
  return rc;
}

int journal::impl::apply(detail::txn_state& st, append_request& req,
                         outcome& out, uint64_t& next_position,
                         int64_t now_us) {
  if (req.import) {
    // A stream that moved away keeps its ids here: check that first.
    cached_head* entry = nullptr;
    error head_err;
    if (auto rc = load_head(st, req.stream, entry, head_err)) return rc;
    if (!head_err && entry->pending.moved)
      return moved_error(st, req.stream, out);
  }
  if (req.shard_epoch != 0) {
    // Fenced here, in the transaction: a leader that was deposed between
    // the gate's admission and this commit writes nothing.
    if (auto rc = check_shard_epoch(st, req.shard, req.shard_epoch, out))
      return rc;
    if (std::get<error>(out)) return 0;
  }
  if (req.snapshot) {
    // Every replica stores the snapshot where it applies this record, so
    // the events it covers must come first in the log.
    auto& snap = req.snapshot->snap;
    cached_head* covered = nullptr;
    error head_err;
    if (auto rc = load_head(st, snap.meta.stream_id, covered, head_err))
      return rc;
    if (!head_err && covered->pending.highest < snap.meta.sequence)
      head_err =
          error{errc::invalid_argument,
                "snapshot of stream '" + snap.meta.stream_id +
                    "' at sequence " + std::to_string(snap.meta.sequence) +
                    " is past the stream's head here (" +
                    std::to_string(covered->pending.highest) +
                    "): a replicated snapshot follows its events"};
    if (head_err) {
      out = std::move(head_err);
      return 0;
    }
  }
  if (req.has_supplied_ids) {
    bool duplicate = false;
    if (auto rc = check_duplicates(st, req, out, duplicate)) return rc;
    if (duplicate && req.shard != no_shard) {
      // The original events are in the shard's log, at or before its end;
      // a replicated journal acknowledges them once that is committed.
      uint64_t end = 0;
      if (auto rc = shard_end(st, req.shard, end)) return rc;
      std::get<append_result>(out).shard_position = end;
    }
    if (duplicate || std::get<error>(out)) return 0;
  }
  cached_head* entry = nullptr;
  error head_err;
  if (auto rc = load_head(st, req.stream, entry, head_err)) return rc;
  if (head_err) {
    out = std::move(head_err);
    return 0;
  }
  auto head_rec = entry->pending;
  auto actual = head_rec.highest;
  if (head_rec.moved) return moved_error(st, req.stream, out);
  auto* import = req.import.get();
  if (import) {
    if (actual != import->expect) {
      out = error{errc::version_conflict,
                  "cannot import stream '" + req.stream +
                      "': it changed here during the import (version " +
                      std::to_string(actual) + ", expected " +
                      std::to_string(import->expect) + ")"};
      return 0;
    }
    if (req.events.empty()) {
      // Every event of a new stream was deleted: only its head moves.
      head_rec.highest = import->highest;
      head_rec.deleted_to = import->deleted_to;
      heads.store(*entry, head_rec);
      append_result res;
      res.stream_version = import->highest;
      out = std::move(res);
      return 0;
    }
    if (actual == 0) head_rec.deleted_to = import->deleted_to;
    actual = import->first - 1;
  } else if (!req.expected.is_any() && req.expected.value() != actual) {
    out = error::conflict({req.stream, req.expected.value(), actual});
    return 0;
  }
  append_result res;
  res.events = std::move(req.results);
  res.events.clear();
  res.events.reserve(req.events.size());
  size_t body_begin = 0;
  auto previous = head_rec.last_position;
  for (size_t i = 0; i < req.events.size(); ++i) {
    auto& item = req.events[i];
    auto seq = actual + i + 1;
    auto pos = next_position++;
    auto body_end = item.body_end;
    auto body_size = body_end - body_begin;
    be64_key pkey{pos};
    MDB_val key = pkey.val();
    MDB_val val{record_header_size + body_size, nullptr};
    // Through the transaction's cursor: it stays on the last leaf page,
    // where MDB_APPEND needs no search from the root.
    if (auto rc =
            mdb_cursor_put(events_cursor, &key, &val, MDB_APPEND | MDB_RESERVE))
      return rc;
    auto* rec = static_cast<char*>(val.mv_data);
    std::memcpy(rec + record_header_size, req.bodies.data() + body_begin,
                body_size);
    seal_record(rec, val.mv_size, event_record_kind, seq,
                import ? import->timestamps[i] : now_us, previous);
    previous = pos;
    body_begin = body_end;
    if (seq % checkpoint_interval == 0) {
      auto ikey_bytes = name_key(req.stream, seq);
      MDB_val ikey = to_val(ikey_bytes);
      MDB_val ival = pkey.val();
      if (auto rc = mdb_put(st.txn, dbs.stream_index, &ikey, &ival, 0))
        return rc;
    }
    id_value idv{pos, seq, req.stream};
    MDB_val idkey{16, item.id.bytes.data()};
    MDB_val idval = idv.val();
    if (auto rc = put_event_id(idkey, idval)) return rc;
    for (auto& tag : req.tags.empty() ? no_tags : req.tags[i]) {
      auto tkey_bytes = name_key(tag, pos);
      MDB_val tkey = to_val(tkey_bytes);
      MDB_val empty{0, nullptr};
      if (auto rc = mdb_put(st.txn, dbs.tags, &tkey, &empty, 0)) return rc;
    }
    if (req.shard != no_shard)
      if (auto rc = put_shard_entry(st, req.shard, pos)) return rc;
    res.events.push_back(event_ref{item.id, seq, pos});
  }
  if (req.shard != no_shard) {
    shard_ends.appended.push_back(req.shard);
    res.shard_position = shard_ends.pending[req.shard];
  }
  res.stream_version = actual + req.events.size();
  head_rec.highest = res.stream_version;
  head_rec.last_position = previous;
  heads.store(*entry, head_rec);
  if (req.snapshot)
    if (auto rc = store_snapshot(st, req.snapshot->snap, req.snapshot->keep))
      return rc;
  out = std::move(res);
  return 0;
}

}  // namespace mnemo::persistence
