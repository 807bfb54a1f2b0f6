// The group-commit writer: one thread drains every queued request into one
// LMDB write transaction and one sync, then answers each request.

#include <algorithm>
#include <chrono>
#include <utility>

#include "head_log.hpp"
#include "journal_impl.hpp"
#include "mnemo/persistence/table_store.hpp"
#include "record_codec.hpp"

namespace mnemo::persistence {

namespace {

constexpr size_t max_cached_heads = 100000;
// The head log is folded into mnemo.streams before it has more records or
// entries than these: a head lookup reads at most this many records, and a
// fold writes at most this many heads.
constexpr uint64_t max_log_records = 32;
constexpr uint64_t max_log_entries = 16384;
// Emptied batch vectors kept for reuse by the writer (journal_impl.hpp).
constexpr size_t max_spare_batches = 4;

// Writes `n` heads into `dbi` (mnemo.streams); `next(i)` returns the stream
// id and head of the `i`-th, in key order. In key order through one cursor:
// LMDB then finds most keys on the leaf page the cursor is already on
// instead of searching from the root.
template <class Next>
int put_heads(MDB_txn* txn, MDB_dbi dbi, size_t n, Next&& next) {
  MDB_cursor* cur = nullptr;
  if (auto rc = mdb_cursor_open(txn, dbi, &cur)) return rc;
  char buf[24];
  int rc = 0;
  for (size_t i = 0; i < n && rc == 0; ++i) {
    const auto& [stream, head] = next(i);
    encode_head(head, buf);
    MDB_val key = to_val(stream);
    MDB_val val{24, buf};
    rc = mdb_cursor_put(cur, &key, &val, 0);
  }
  mdb_cursor_close(cur);
  return rc;
}

const std::vector<std::string> no_tags;

// Answers `req` with `out` (an error or an append result).
void answer(request& req, outcome out) {
  std::visit(
      [&](auto& r) {
        using req_type = std::decay_t<decltype(r)>;
        if constexpr (std::is_same_v<req_type, append_request>) {
          if (auto* res = std::get_if<append_result>(&out))
            r.done(std::move(*res));
          else
            r.done(std::get<error>(std::move(out)));
        } else {
          r.done(std::get<error>(std::move(out)));
        }
      },
      req);
}

bool is_tail(const request& req) noexcept {
  auto* w = std::get_if<write_request>(&req);
  return w != nullptr && w->after_appends;
}

error sticky_error(const error& original) {
  return error{errc::journal_failed,
               "the journal refuses writes after a failed commit (" +
                   original.to_string() + "); reopen it"};
}

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

int journal::impl::moved_error(detail::txn_state& st, const std::string& stream,
                               outcome& out) {
  write_txn txn{st};
  auto to = table_store::get_in(txn, moved_table, stream);
  if (st.fatal_rc != 0) return st.fatal_rc;
  std::string member = to && *to ? **to : std::string{"?"};
  out = error{errc::stream_moved, "stream '" + stream + "' moved to member '" +
                                      member +
                                      "' and takes no appends on this node"};
  return 0;
}

void journal::impl::enqueue(request req) {
  std::unique_lock<std::mutex> guard{mtx};
  if (stopping || cfg.read_only) {
    guard.unlock();
    answer(req,
           error{cfg.read_only ? errc::invalid_argument : errc::journal_closed,
                 cfg.read_only ? "the journal was opened read-only"
                               : "the journal is closing"});
    return;
  }
  queue.push_back(std::move(req));
  if (queue.size() == 1) {
    guard.unlock();
    cv.notify_one();
  }
}

void journal::impl::run() {
  std::vector<request> batch;
  for (;;) {
    {
      std::unique_lock<std::mutex> guard{mtx};
      cv.wait(guard, [this] { return !queue.empty() || stopping; });
      if (queue.empty()) break;
      if (queue.size() <= cfg.max_batch_requests) {
        batch.swap(queue);
      } else {
        auto first = queue.begin();
        auto last = first + static_cast<ptrdiff_t>(cfg.max_batch_requests);
        batch.assign(std::make_move_iterator(first),
                     std::make_move_iterator(last));
        queue.erase(first, last);
      }
    }
    process(batch);
    batch.clear();
  }
  fold_head_log_at_close();
}

void journal::impl::process(std::vector<request>& batch) {
  error failed;
  {
    std::lock_guard<std::mutex> guard{mtx};
    failed = sticky;
  }
  if (failed) {
    for (auto& req : batch) answer(req, sticky_error(failed));
    return;
  }
  std::vector<outcome> out;
  out.swap(spare_outcomes);
  uint64_t new_head = 0;
  bool wrote_events = false;
  bool committing = false;
  auto old_head = head.load(std::memory_order_relaxed);
  for (;;) {
    auto rc = try_commit(batch, out, new_head, wrote_events, committing);
    if (rc == 0) break;
    if (rc == MDB_MAP_FULL && grow_map()) continue;
    // Before `mdb_txn_commit` the transaction was aborted and nothing
    // reached the disk, so the fault belongs to the requests: too many dirty
    // pages, a map at max_map_size, or an LMDB error while one of them was
    // applied. Halve the batch until the request that causes it is alone,
    // so that it fails by itself and the others commit. A damaged head log
    // found by a fold (`commit_error`) is no request's fault.
    // A full map or transaction also fails a commit before it writes.
    bool request_fault =
        (!committing || rc == MDB_MAP_FULL || rc == MDB_TXN_FULL) &&
        !commit_error;
    if (request_fault && batch.size() > 1) {
      out.clear();
      spare_outcomes.swap(out);
      auto mid = batch.begin() + static_cast<ptrdiff_t>(batch.size() / 2);
      std::vector<request> second{std::make_move_iterator(mid),
                                  std::make_move_iterator(batch.end())};
      batch.erase(mid, batch.end());
      process(batch);
      process(second);
      return;
    }
    error err;
    if (commit_error)
      err = std::exchange(commit_error, error{});
    else if (request_fault)
      err = request_error(batch.front(), rc);
    else
      err = lmdb_commit_error(rc, "group commit", cfg.directory);
    stats.failed_commits.fetch_add(1, std::memory_order_relaxed);
    if (!request_fault && rc != MDB_MAP_FULL && rc != MDB_TXN_FULL) {
      // The commit itself failed: what reached the disk is unknown to us
      // (LMDB keeps the old meta page), so refuse to pretend from now on.
      std::lock_guard<std::mutex> guard{mtx};
      sticky = err;
    }
    for (auto& req : batch) answer(req, err);
    return;
  }
  if (wrote_events) head.store(new_head, std::memory_order_release);
  count_commit(batch.size(), wrote_events ? new_head - old_head : 0);
  // Listeners first: whoever learns of a commit through its completion can
  // rely on the commit listeners having been told already (the event bus
  // has its wake-up queued; tests drain both in one go).
  if (wrote_events) notify(new_head);
  // Writes and deletions are answered here: a projection's tail write
  // queues its successor from its completion, in time for the next commit.
  // Appends go to the completer thread, so that their callbacks (which
  // typically submit more work) run while the writer commits again.
  bool appends = false;
  for (size_t i = 0; i < batch.size(); ++i) {
    if (std::holds_alternative<append_request>(batch[i]))
      appends = true;
    else
      answer(batch[i], std::move(out[i]));
  }
  if (!appends) {
    out.clear();
    spare_outcomes.swap(out);
    return;
  }
  answered handed{std::move(batch), std::move(out)};
  bool was_empty = false;
  {
    std::lock_guard<std::mutex> guard{done_mtx};
    was_empty = done_queue.empty();
    done_queue.push_back(std::move(handed));
    if (!spare.empty()) {
      batch = std::move(spare.back().requests);
      spare_outcomes = std::move(spare.back().outcomes);
      spare.pop_back();
    }
  }
  if (was_empty) done_cv.notify_one();
}

error journal::impl::request_error(const request& req, int rc) {
  std::string what = std::visit(
      [](const auto& r) -> std::string {
        using req_type = std::decay_t<decltype(r)>;
        if constexpr (std::is_same_v<req_type, append_request>) {
          auto bytes = r.bodies.size() + r.events.size() * record_header_size;
          return "an append of " + std::to_string(r.events.size()) +
                 " event(s), " + std::to_string(bytes) + " bytes, to stream '" +
                 r.stream + "'";
        } else if constexpr (std::is_same_v<req_type, delete_request>) {
          return "a deletion of events of stream '" + r.stream + "'";
        } else if constexpr (std::is_same_v<req_type, replica_request>) {
          if (r.what == replica_request::kind::set_learner)
            return std::string{"a change of shards' learner flags"};
          return "a replicated batch of " + std::to_string(r.records.size()) +
                 " record(s) at position " + std::to_string(r.position);
        } else {
          return std::string{"a write (snapshot, offset or read model)"};
        }
      },
      req);
  if (rc == MDB_MAP_FULL) {
    MDB_envinfo info{};
    MDB_stat stat{};
    mdb_env_info(env, &info);
    mdb_env_stat(env, &stat);
    auto used = (static_cast<uint64_t>(info.me_last_pgno) + 1) * stat.ms_psize;
    auto size = static_cast<uint64_t>(info.me_mapsize);
    auto left = size > used ? size - used : 0;
    return error{errc::storage_full,
                 "map full: " + what + " does not fit in the " +
                     std::to_string(left) + " bytes left of the map (" +
                     std::to_string(size) +
                     " bytes, journal_config::max_map_size reached; pages "
                     "freed by deletions are reused first). It failed alone; "
                     "raise max_map_size or delete old events"};
  }
  if (rc == MDB_TXN_FULL)
    return error{errc::storage_error,
                 what +
                     " changes more pages than one LMDB transaction "
                     "allows (MDB_TXN_FULL). It failed alone; split it "
                     "into smaller requests"};
  auto err = lmdb_error(rc, what);
  return error{err.code(), err.message() + ". It failed alone"};
}

void journal::impl::complete() {
  std::vector<answered> ready;
  for (;;) {
    {
      std::unique_lock<std::mutex> guard{done_mtx};
      done_cv.wait(guard,
                   [this] { return !done_queue.empty() || done_stopping; });
      if (done_queue.empty()) return;
      ready.swap(done_queue);
    }
    for (auto& a : ready) {
      for (size_t i = 0; i < a.requests.size(); ++i)
        if (std::holds_alternative<append_request>(a.requests[i]))
          answer(a.requests[i], std::move(a.outcomes[i]));
      a.requests.clear();
      a.outcomes.clear();
    }
    std::lock_guard<std::mutex> guard{done_mtx};
    while (!ready.empty() && spare.size() < max_spare_batches) {
      spare.push_back(std::move(ready.back()));
      ready.pop_back();
    }
    ready.clear();
  }
}

int journal::impl::try_commit(std::vector<request>& batch,
                              std::vector<outcome>& out, uint64_t& new_head,
                              bool& wrote_events, bool& committing) {
  committing = false;
  out.assign(batch.size(), outcome{error{}});
  detail::txn_state st;
  st.dbs = &dbs;
  if (auto rc = mdb_txn_begin(env, nullptr, 0, &st.txn)) return rc;
  auto fail = [&](int rc) {
    close_cursors();
    mdb_txn_abort(st.txn);
    settle_heads(false);
    settle_shards(false);
    return rc;
  };
  if (auto rc = open_cursors(st)) return fail(rc);
  auto first_position = head.load(std::memory_order_relaxed) + 1;
  auto next_position = first_position;
  auto now = now_micros();
  // Two passes: tail writes (`write_after_appends`) after everything else,
  // so they see every event of this commit. Outcomes stay by index.
  for (bool tail : {false, true}) {
    for (size_t i = 0; i < batch.size(); ++i) {
      if (is_tail(batch[i]) != tail) continue;
      auto rc = std::visit(
          [&](auto& req) { return apply(st, req, out[i], next_position, now); },
          batch[i]);
      if (rc == 0 && st.fatal_rc != 0) rc = st.fatal_rc;
      if (rc != 0) return fail(rc);
    }
  }
  wrote_events = next_position != first_position;
  if (auto rc = store_heads(st, wrote_events ? next_position - 1 : 0))
    return fail(rc);
  if (auto rc = compact_sparse(st)) return fail(rc);
  if (wrote_events) {
    be64_key value{next_position - 1};
    MDB_val key = to_val("head");
    MDB_val val = value.val();
    if (auto rc = mdb_put(st.txn, dbs.meta, &key, &val, 0)) return fail(rc);
  }
  close_cursors();
  committing = true;
  auto t0 = std::chrono::steady_clock::now();
  auto rc = mdb_txn_commit(st.txn);
  last_commit_us = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(
          std::chrono::steady_clock::now() - t0)
          .count());
  if (rc == 0) note_head_write();
  settle_heads(rc == 0);
  settle_shards(rc == 0);
  if (rc != 0) return rc;
  new_head = next_position - 1;
  return 0;
}

int journal::impl::open_cursors(detail::txn_state& st) {
  auto rc = mdb_cursor_open(st.txn, dbs.event_ids, &event_ids_cursor);
  if (rc != 0) {
    event_ids_cursor = nullptr;
    return rc;
  }
  rc = mdb_cursor_open(st.txn, dbs.events, &events_cursor);
  if (rc != 0) events_cursor = nullptr;
  return rc;
}

void journal::impl::close_cursors() noexcept {
  if (event_ids_cursor != nullptr) mdb_cursor_close(event_ids_cursor);
  if (events_cursor != nullptr) mdb_cursor_close(events_cursor);
  event_ids_cursor = nullptr;
  events_cursor = nullptr;
}

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
      head_err = error{errc::invalid_argument,
                       "snapshot of stream '" + snap.meta.stream_id +
                           "' at sequence " +
                           std::to_string(snap.meta.sequence) +
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
      store_head(*entry, head_rec);
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
    appended_shards.push_back(req.shard);
    res.shard_position = pending_shard_ends[req.shard];
  }
  res.stream_version = actual + req.events.size();
  head_rec.highest = res.stream_version;
  head_rec.last_position = previous;
  store_head(*entry, head_rec);
  if (req.snapshot)
    if (auto rc = store_snapshot(st, req.snapshot->snap, req.snapshot->keep))
      return rc;
  out = std::move(res);
  return 0;
}

int journal::impl::store_snapshot(detail::txn_state& st, const snapshot& snap,
                                  uint64_t keep) {
  auto key_bytes = name_key(snap.meta.stream_id, snap.meta.sequence);
  auto record = encode_snapshot(snap);
  auto key = to_val(key_bytes);
  auto val = to_val(record);
  if (auto rc = mdb_put(st.txn, dbs.snapshots, &key, &val, 0)) return rc;
  if (keep == 0) return 0;
  write_txn txn{st};
  if (auto err = snapshot_store::retain_in(txn, snap.meta.stream_id, keep))
    // Only LMDB fails here (the stream id was checked): the commit fails.
    return st.fatal_rc != 0 ? st.fatal_rc : MDB_BAD_TXN;
  return 0;
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
    store_head(*entry, head_rec);
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
    if (auto rc = remove_event(st, req.stream, v.seq, v.pos, v.tags))
      return rc;
  head_rec.deleted_to = to;
  store_head(*entry, head_rec);
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

int journal::impl::load_head(detail::txn_state& st, const std::string& stream,
                             cached_head*& out, error& err) {
  if (auto i = heads.find(stream); i != heads.end()) {
    out = &i->second;
    return 0;
  }
  head_record value;
  if (auto read_err = read_head(st, stream, value)) {
    if (st.fatal_rc != 0) return st.fatal_rc;
    // A damaged head fails its own request; the others commit.
    err = std::move(read_err);
    return 0;
  }
  if (value.highest > 0) {
    // Only a stream that exists can have moved away.
    write_txn txn{st};
    auto moved = table_store::get_in(txn, moved_table, stream);
    if (st.fatal_rc != 0) return st.fatal_rc;
    if (!moved) {
      err = moved.error();
      return 0;
    }
    value.moved = moved->has_value();
  }
  auto& [key, entry] = *heads.emplace(stream, cached_head{value, value}).first;
  entry.stream = &key;
  char prefix[16] = {};
  std::memcpy(prefix, key.data(), std::min<size_t>(key.size(), 16));
  entry.order[0] = get_be64(prefix);
  entry.order[1] = get_be64(prefix + 8);
  out = &entry;
  return 0;
}

void journal::impl::store_head(cached_head& entry, const head_record& value) {
  if (!entry.dirty) {
    entry.dirty = true;
    dirty_heads.push_back(&entry);
  }
  entry.pending = value;
}

void journal::impl::settle_heads(bool committed) {
  for (auto* entry : dirty_heads) {
    if (committed)
      entry->committed = entry->pending;
    else
      entry->pending = entry->committed;
    entry->dirty = false;
  }
  dirty_heads.clear();
  // Bound the cache between transactions; a miss costs one lookup. The
  // log's streams are then no longer all in the cache.
  if (heads.size() > max_cached_heads) {
    heads.clear();
    logged_heads.clear();
    log_in_cache = log_records == 0;
  }
}

void journal::impl::note_head_write() {
  if (pending_heads == head_write::logged) {
    ++log_records;
    log_entries += sorted_heads.size();
    if (!log_in_cache) return;
    for (auto& item : sorted_heads) {
      if (item.entry->logged) continue;
      item.entry->logged = true;
      logged_heads.push_back(item.entry);
    }
  } else if (pending_heads == head_write::folded) {
    if (log_records > 0)
      stats.head_folds.fetch_add(1, std::memory_order_relaxed);
    log_records = log_entries = 0;
    for (auto* entry : logged_heads) entry->logged = false;
    logged_heads.clear();
    log_in_cache = true;
  }
}

namespace {

// Sorts heads by stream. The sort compares the cached 16-byte prefixes and
// only reads the keys of entries whose prefixes are equal.
template <class Order>
void sort_by_stream(std::vector<Order>& v) {
  std::sort(v.begin(), v.end(), [](const Order& a, const Order& b) {
    if (a.hi != b.hi) return a.hi < b.hi;
    if (a.lo != b.lo) return a.lo < b.lo;
    return *a.entry->stream < *b.entry->stream;  // memcmp order
  });
}

}  // namespace

void journal::impl::sort_dirty_heads() {
  sorted_heads.clear();
  for (auto* entry : dirty_heads)
    sorted_heads.push_back({entry->order[0], entry->order[1], entry});
  sort_by_stream(sorted_heads);
}

int journal::impl::store_heads(detail::txn_state& st, uint64_t last_position) {
  pending_heads = head_write::none;
  if (dirty_heads.empty()) return 0;
  sort_dirty_heads();
  if (last_position != 0 && log_records < max_log_records &&
      log_entries + sorted_heads.size() <= max_log_entries) {
    pending_heads = head_write::logged;
    return log_heads(st, last_position);
  }
  pending_heads = head_write::folded;
  return log_records == 0 ? flush_heads(st) : fold_heads(st);
}

int journal::impl::flush_heads(detail::txn_state& st) {
  return put_heads(st.txn, dbs.streams, sorted_heads.size(),
                   [this](size_t i) { return sorted_head(i); });
}

int journal::impl::log_heads(detail::txn_state& st, uint64_t last_position) {
  size_t id_bytes = 0;
  for (auto& item : sorted_heads) id_bytes += item.entry->stream->size();
  be64_key pkey{last_position};
  MDB_val key = pkey.val();
  MDB_val val{head_log_size(sorted_heads.size(), id_bytes), nullptr};
  if (auto rc =
          mdb_put(st.txn, dbs.head_log, &key, &val, MDB_APPEND | MDB_RESERVE))
    return rc;
  encode_head_log(static_cast<char*>(val.mv_data), sorted_heads.size(),
                  [this](size_t k) { return sorted_head(k); });
  return 0;
}

int journal::impl::fold_cached_heads(detail::txn_state& st) {
  // Pending heads: the committed ones for streams this commit leaves alone.
  fold_cached.clear();
  for (auto* entry : logged_heads)
    fold_cached.push_back({entry->order[0], entry->order[1], entry});
  for (auto* entry : dirty_heads)
    if (!entry->logged)
      fold_cached.push_back({entry->order[0], entry->order[1], entry});
  sort_by_stream(fold_cached);
  auto rc =
      put_heads(st.txn, dbs.streams, fold_cached.size(), [this](size_t i) {
        auto* entry = fold_cached[i].entry;
        return std::pair<std::string_view, const head_record&>{*entry->stream,
                                                               entry->pending};
      });
  if (rc != 0) return rc;
  return mdb_drop(st.txn, dbs.head_log, 0);
}

int journal::impl::fold_heads(detail::txn_state& st) {
  if (log_in_cache) return fold_cached_heads(st);
  // The newest head per stream: the changed ones, then the log's records
  // newest first. The stream ids point into the log's pages, which stay
  // mapped and unchanged until the log is emptied at the end.
  auto& newest = fold_heads_map;
  newest.clear();
  for (auto* entry : dirty_heads)
    newest.emplace(*entry->stream, entry->pending);
  uint64_t position = 0;
  auto rc = collect_head_log(st.txn, dbs.head_log, position, newest);
  if (rc == MDB_CORRUPTED) commit_error = damaged_head_log(position);
  if (rc != 0) return rc;
  fold_order.clear();
  for (auto& item : newest) fold_order.push_back(&item);
  std::sort(fold_order.begin(), fold_order.end(),
            [](auto* a, auto* b) { return a->first < b->first; });
  rc = put_heads(st.txn, dbs.streams, fold_order.size(), [this](size_t i) {
    return std::pair<std::string_view, const head_record&>{
        fold_order[i]->first, fold_order[i]->second};
  });
  if (rc != 0) return rc;
  return mdb_drop(st.txn, dbs.head_log, 0);
}

error journal::impl::count_head_log() {
  return with_read([this](detail::txn_state& st) -> error {
    cursor cur;
    if (auto err = cur.open(st, dbs.head_log)) return err;
    MDB_val key;
    MDB_val val;
    int rc = cur.get(key, val, MDB_FIRST);
    for (; rc == 0; rc = cur.get(key, val, MDB_NEXT)) {
      // A damaged record counts as one entry; folding it reports it.
      head_log_entries rec{static_cast<const char*>(val.mv_data), val.mv_size};
      ++log_records;
      log_entries += rec.parse() ? rec.count : 1;
    }
    if (rc != MDB_NOTFOUND) return st.check(rc, "mdb_cursor_get (head log)");
    // The first fold reads a log left by an earlier process.
    log_in_cache = log_records == 0;
    return {};
  });
}

void journal::impl::fold_head_log_at_close() {
  if (log_records == 0) return;
  {
    std::lock_guard<std::mutex> guard{mtx};
    if (sticky) return;
  }
  // Not needed for correctness (the log is part of the format): it leaves
  // a closed directory with every head in mnemo.streams. A failure leaves
  // the log as it was.
  for (int attempt = 0; attempt < 2; ++attempt) {
    detail::txn_state st;
    st.dbs = &dbs;
    if (mdb_txn_begin(env, nullptr, 0, &st.txn) != 0) return;
    auto rc = fold_heads(st);
    if (rc == 0)
      rc = mdb_txn_commit(st.txn);
    else
      mdb_txn_abort(st.txn);
    if (rc == 0) {
      pending_heads = head_write::folded;
      note_head_write();
      return;
    }
    commit_error = {};
    if (rc != MDB_MAP_FULL || !grow_map()) return;
  }
}

namespace {

// Databases considered for compaction: at least this many entries ...
constexpr uint64_t compact_min_entries = 256;
// ... and at most this many pages (4 MiB with 4 KiB pages, rewritten in a
// few milliseconds).
constexpr uint64_t compact_max_pages = 1024;
// LMDB's per-node overhead in a leaf page: the node header and the slot in
// the page's offset array.
constexpr size_t lmdb_node_overhead = 8 + 2;
constexpr size_t lmdb_page_header = 16;

// The contents of a database, read for a dense rewrite: one buffer for all
// keys and values, with their sizes alongside.
struct db_copy {
  std::string bytes;
  std::vector<std::pair<size_t, size_t>> sizes;
};

// Calls `f(key, value)` for every entry of `dbi` in key order.
template <class F>
int for_each_entry(MDB_txn* txn, MDB_dbi dbi, F&& f) {
  MDB_cursor* cur = nullptr;
  if (auto rc = mdb_cursor_open(txn, dbi, &cur)) return rc;
  MDB_val key;
  MDB_val val;
  int rc = 0;
  while ((rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) == 0) f(key, val);
  mdb_cursor_close(cur);
  return rc == MDB_NOTFOUND ? 0 : rc;
}

// Returns whether `dbi` is worth a dense rewrite, with its contents in
// `copy`: it has grown by a quarter since `seen`, is small, holds no
// overflow pages, and its leaf pages are less than three quarters full.
int worth_compacting(MDB_txn* txn, MDB_dbi dbi, uint64_t& seen, db_copy& copy,
                     bool& worth) {
  worth = false;
  MDB_stat ms;
  if (auto rc = mdb_stat(txn, dbi, &ms)) return rc;
  if (ms.ms_entries < compact_min_entries || ms.ms_entries * 4 < seen * 5)
    return 0;
  seen = ms.ms_entries;
  if (ms.ms_overflow_pages > 0 ||
      ms.ms_branch_pages + ms.ms_leaf_pages > compact_max_pages)
    return 0;
  // Sizes first; the copy only for a database that is worth rewriting.
  size_t node_bytes = 0;
  auto rc =
      for_each_entry(txn, dbi, [&](const MDB_val& key, const MDB_val& val) {
        node_bytes +=
            lmdb_node_overhead + ((key.mv_size + val.mv_size + 1) & ~size_t{1});
      });
  if (rc != 0) return rc;
  auto dense = node_bytes / (ms.ms_psize - lmdb_page_header) + 1;
  worth = dense * 4 <= ms.ms_leaf_pages * 3;
  if (!worth) return 0;
  copy.sizes.reserve(ms.ms_entries);
  return for_each_entry(txn, dbi, [&](const MDB_val& key, const MDB_val& val) {
    copy.bytes.append(static_cast<const char*>(key.mv_data), key.mv_size);
    copy.bytes.append(static_cast<const char*>(val.mv_data), val.mv_size);
    copy.sizes.emplace_back(key.mv_size, val.mv_size);
  });
}

// Empties `dbi` and writes `copy` back in key order with MDB_APPEND, which
// fills every page.
int rewrite_dense(MDB_txn* txn, MDB_dbi dbi, const db_copy& copy) {
  if (auto rc = mdb_drop(txn, dbi, 0)) return rc;
  size_t at = 0;
  for (auto [ksize, vsize] : copy.sizes) {
    auto* data = const_cast<char*>(copy.bytes.data()) + at;
    MDB_val k{ksize, data};
    MDB_val v{vsize, data + ksize};
    if (auto rc = mdb_put(txn, dbi, &k, &v, MDB_APPEND)) return rc;
    at += ksize + vsize;
  }
  return 0;
}

}  // namespace

int journal::impl::compact_sparse(detail::txn_state& st) {
  // Both are written by random inserts, which split full pages in halves:
  // they end up about two thirds full, and a group commit that updates a
  // few dozen of their rows rewrites about as many pages. Dense pages mean
  // fewer of them per commit, and fewer bytes for its fsync.
  MDB_dbi dbis[2] = {dbs.streams, dbs.tables};
  for (size_t i = 0; i < 2; ++i) {
    db_copy copy;
    bool worth = false;
    auto rc =
        worth_compacting(st.txn, dbis[i], compaction_seen[i], copy, worth);
    if (rc == 0 && worth) {
      // In a child transaction: a failure leaves the database as it was.
      MDB_txn* child = nullptr;
      rc = mdb_txn_begin(env, st.txn, 0, &child);
      if (rc == 0) {
        rc = rewrite_dense(child, dbis[i], copy);
        if (rc == 0)
          rc = mdb_txn_commit(child);
        else
          mdb_txn_abort(child);
      }
      if (rc == 0) stats.compactions.fetch_add(1, std::memory_order_relaxed);
    }
    // A full map grows and the whole commit is retried; any other failure
    // only skips the rewrite.
    if (rc == MDB_MAP_FULL) return rc;
  }
  return 0;
}

int journal::impl::apply(detail::txn_state& st, write_request& req,
                         outcome& out, uint64_t&, int64_t) {
  detail::txn_state child;
  child.dbs = &dbs;
  if (auto rc = mdb_txn_begin(env, st.txn, 0, &child.txn)) return rc;
  write_txn txn{child};
  error err;
  try {
    err = req.fn(txn);
  } catch (const std::exception& e) {
    err = error{errc::storage_error,
                std::string{"write function threw: "} + e.what()};
  }
  if (child.fatal_rc != 0) {
    mdb_txn_abort(child.txn);
    return child.fatal_rc;
  }
  if (err) {
    mdb_txn_abort(child.txn);
    out = std::move(err);
    return 0;
  }
  return mdb_txn_commit(child.txn);
}

namespace {

template <size_t N, class Array>
void count_in(const std::array<uint64_t, N>& bounds, Array& buckets,
              uint64_t value) {
  auto i = static_cast<size_t>(
      std::lower_bound(bounds.begin(), bounds.end(), value) - bounds.begin());
  buckets[i].fetch_add(1, std::memory_order_relaxed);
}

}  // namespace

void journal::impl::count_commit(size_t requests, uint64_t events) {
  stats.commits.fetch_add(1, std::memory_order_relaxed);
  stats.requests.fetch_add(requests, std::memory_order_relaxed);
  stats.commit_us_sum.fetch_add(last_commit_us, std::memory_order_relaxed);
  count_in(journal_stats::commit_bounds_us, stats.commit_us, last_commit_us);
  if (events == 0) return;
  stats.events.fetch_add(events, std::memory_order_relaxed);
  count_in(journal_stats::batch_bounds, stats.batch_events, events);
}

bool journal::impl::grow_map() {
  auto current = map_size.load();
  if (current >= cfg.max_map_size) return false;
  auto next = std::min(current * 2, cfg.max_map_size);
  std::unique_lock<std::shared_mutex> guard{resize_mtx};
  if (mdb_env_set_mapsize(env, next) != 0) return false;
  MDB_envinfo info;
  mdb_env_info(env, &info);
  map_size = info.me_mapsize;
  stats.map_grows.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void journal::impl::notify(uint64_t new_head) {
  std::lock_guard<std::mutex> guard{listeners_mtx};
  for (auto& [token, fn] : listeners) fn(new_head);
}

}  // namespace mnemo::persistence
