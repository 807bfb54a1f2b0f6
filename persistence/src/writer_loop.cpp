// The group-commit writer: one thread drains every queued request into one
// LMDB write transaction and one sync, then answers each request; appends
// are answered by a second thread (the completer) while the writer goes on.
// A commit that fails before `mdb_txn_commit` is split until the request
// at fault fails alone; a full map grows it and commits again; a failed
// `mdb_txn_commit` makes every later write fail (`sticky`).
//
// Owns, of journal::impl: the request queue (mtx, cv, queue, stopping,
// sticky) and the writer thread; the completer thread and its
// `completions`; spare_outcomes, commit_error (also set by head_cache.cpp),
// the writer's cursors, last_commit_us; head, and map_size after open
// (grow_map, under the exclusive side of resize_mtx). Invariants: requests
// are answered once each, appends in commit order; `head` is stored only
// after the commit of the events up to it. The requests themselves are
// applied by the file of their concept (journal_impl.hpp lists them).

#include <algorithm>
#include <chrono>
#include <utility>

#include "journal_impl.hpp"
#include "record_codec.hpp"

namespace mnemo::persistence {

namespace {

// Emptied batch vectors kept for reuse by the writer (journal_impl.hpp).
constexpr size_t max_spare_batches = 4;

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

}  // namespace

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
  completion_queue::answered handed{std::move(batch), std::move(out)};
  bool was_empty = false;
  {
    std::lock_guard<std::mutex> guard{completions.mtx};
    was_empty = completions.queue.empty();
    completions.queue.push_back(std::move(handed));
    if (!completions.spare.empty()) {
      batch = std::move(completions.spare.back().requests);
      spare_outcomes = std::move(completions.spare.back().outcomes);
      completions.spare.pop_back();
    }
  }
  if (was_empty) completions.cv.notify_one();
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
  std::vector<completion_queue::answered> ready;
  for (;;) {
    {
      std::unique_lock<std::mutex> guard{completions.mtx};
      completions.cv.wait(guard, [this] {
        return !completions.queue.empty() || completions.stopping;
      });
      if (completions.queue.empty()) return;
      ready.swap(completions.queue);
    }
    for (auto& a : ready) {
      for (size_t i = 0; i < a.requests.size(); ++i)
        if (std::holds_alternative<append_request>(a.requests[i]))
          answer(a.requests[i], std::move(a.outcomes[i]));
      a.requests.clear();
      a.outcomes.clear();
    }
    std::lock_guard<std::mutex> guard{completions.mtx};
    while (!ready.empty() && completions.spare.size() < max_spare_batches) {
      completions.spare.push_back(std::move(ready.back()));
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
    heads.settle(false);
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
  heads.settle(rc == 0);
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

}  // namespace mnemo::persistence
