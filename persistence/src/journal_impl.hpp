#pragma once

// Private: the state behind `journal` and its group-commit writer. Each
// group of members says which file owns it; the member functions are
// declared below by the file that defines them:
//
//   journal_open.cpp      opening and closing the directory and environment
//   journal.cpp           the journal's accessors of this state
//   journal_reads.cpp     reads in read transactions (`with_read`)
//   writer_loop.cpp       the queue, the writer and completer threads, the
//                         group commit and its failures, map growth
//   journal_appends.cpp   appends and the event-id index
//   journal_deletes.cpp   deletions of a stream's events
//   journal_writes.cpp    caller-supplied write functions
//   stream_move.cpp       export, import and release of streams
//   shard_snapshots.cpp   snapshots that join a shard's log
//   head_cache.cpp        the writer's stream heads and the head log
//   compaction.cpp        dense rewrites of small, sparse databases
//   journal_stats.cpp     the commit counters behind `journal::stats`
//   commit_listeners.cpp  `journal::subscribe` and its notifications
//   replica_log.cpp       replica requests and the shard logs' ends
//
// The private headers beside it: requests.hpp (what the writer is asked and
// answers), head_record.hpp (a stream's head record), head_cache.hpp (the
// writer's cached heads), walk_stream.hpp (a stream's events along their
// back links).

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include <sys/types.h>

#include <lmdb.h>

#include "head_cache.hpp"
#include "head_record.hpp"
#include "lmdb_util.hpp"
#include "mnemo/persistence/dead_letter_store.hpp"
#include "mnemo/persistence/journal.hpp"
#include "mnemo/persistence/offset_store.hpp"
#include "mnemo/persistence/snapshot_store.hpp"
#include "requests.hpp"

namespace mnemo::persistence {

/// Version of the on-disk format this build writes. It also reads formats 1
/// (format 2 without mnemo.head_log) and 2 (checkpoints every 32 events
/// instead of 128) and upgrades them on a writable open.
constexpr uint32_t written_format = 3;

/// Table (table_store) of streams that moved away: stream -> member.
constexpr std::string_view moved_table = "mnemo.moved";
/// Table of journal-wide counters; key `release_generation_key` counts
/// `release_stream` calls.
constexpr std::string_view journal_table = "mnemo.journal";
constexpr std::string_view release_generation_key = "release_generation";

/// Append completions of committed group commits, answered in commit order
/// by the completer thread while the writer goes on with the next commit
/// (writer_loop.cpp). The whole batch goes over, by move: requests other
/// than appends in it were answered by the writer and are only destroyed
/// here. The emptied vectors come back through `spare` and keep their
/// capacity, so that a group commit of hundreds of requests neither moves
/// them one by one nor allocates fresh (page-faulting) memory for them.
struct completion_queue {
  struct answered {
    std::vector<request> requests;
    std::vector<outcome> outcomes;
  };
  std::mutex mtx;
  std::condition_variable cv;
  std::vector<answered> queue;  // guarded by mtx
  std::vector<answered> spare;  // guarded by mtx
  bool stopping = false;        // guarded by mtx
};

/// The listeners of `journal::subscribe` (commit_listeners.cpp).
struct commit_listeners {
  std::mutex mtx;
  std::map<uint64_t, commit_listener> by_token;  // guarded by mtx
  uint64_t next_token = 1;                       // guarded by mtx
};

/// Writer thread only: the end of each shard log as committed, and as the
/// transaction in progress changed it (replica_log.cpp).
struct shard_end_cache {
  std::unordered_map<uint32_t, uint64_t> committed;
  std::unordered_map<uint32_t, uint64_t> pending;
  /// Shards that local appends of the transaction in progress wrote to (a
  /// truncation of one of them waits for the next).
  std::vector<uint32_t> appended;
};

struct journal::impl {
  explicit impl(journal& self, journal_config config)
      : cfg(std::move(config)),
        snapshots(self),
        offsets(self),
        dead_letters(self) {}

  journal_config cfg;

  // -- opened and closed by journal_open.cpp ---------------------------------

  MDB_env* env = nullptr;
  // `mnemo.lock` in the directory, flock'ed while a writer has it open.
  int lock_fd = -1;
  // The directory's entry in the process's set of open directories.
  std::optional<std::pair<dev_t, ino_t>> claimed;
  databases dbs;
  // The directory's format version, as opened (or upgraded).
  uint64_t stored_format = written_format;
  // The directory's identity: 16 bytes from meta `replica_id` (empty for
  // an older directory opened read-only).
  std::string replica_id;

  // -- the group commit (writer_loop.cpp) ------------------------------------

  // Readers hold it shared; the writer holds it exclusively to resize.
  mutable std::shared_mutex resize_mtx;
  // The global position of the last committed event: read at open, set by
  // the writer after each commit (or by `head_position` of a read-only
  // journal).
  std::atomic<uint64_t> head{0};
  std::atomic<uint64_t> map_size{0};
  std::mutex mtx;
  std::condition_variable cv;
  std::vector<request> queue;
  bool stopping = false;
  error sticky;  // guarded by mtx
  std::thread writer;
  completion_queue completions;
  std::thread completer;
  // Writer thread only: an empty outcome vector with capacity.
  std::vector<outcome> spare_outcomes;
  // Writer thread only: why the last failed commit failed when that is not
  // an LMDB code (a damaged head log record found while folding).
  error commit_error;
  // Writer thread only: cursors on mnemo.event_ids and mnemo.events in the
  // transaction in progress (null outside one).
  MDB_cursor* event_ids_cursor = nullptr;
  MDB_cursor* events_cursor = nullptr;
  // Writer thread only: duration of the last `mdb_txn_commit`.
  uint64_t last_commit_us = 0;

  // -- owned by the other concepts of the writer -----------------------------

  // Writer thread only: cached stream heads and the head log's counts
  // (head_cache.cpp).
  head_cache heads;
  // Writer thread only: the shard logs' ends (replica_log.cpp).
  shard_end_cache shard_ends;
  // Writer thread only: entries of mnemo.streams and mnemo.tables when
  // `compact_sparse` last considered them (compaction.cpp).
  uint64_t compaction_seen[2] = {0, 0};
  commit_listeners listeners;
  // Written by the writer thread, read by `journal::stats`
  // (journal_stats.cpp).
  struct counters {
    std::atomic<uint64_t> commits{0};
    std::atomic<uint64_t> failed_commits{0};
    std::atomic<uint64_t> requests{0};
    std::atomic<uint64_t> events{0};
    std::atomic<uint64_t> map_grows{0};
    std::atomic<uint64_t> compactions{0};
    std::atomic<uint64_t> head_folds{0};
    std::atomic<uint64_t> commit_us_sum{0};
    std::array<std::atomic<uint64_t>, journal_stats::batch_bounds.size() + 1>
        batch_events{};
    std::array<std::atomic<uint64_t>,
               journal_stats::commit_bounds_us.size() + 1>
        commit_us{};
  } stats;

  // The stores that share the journal's environment.
  snapshot_store snapshots;
  offset_store offsets;
  dead_letter_store dead_letters;

  // -- opening (journal_open.cpp) --------------------------------------------

  error open_env();
  error open_databases();

  // -- reads (journal_reads.cpp) ---------------------------------------------

  /// Runs `f(txn_state&)` in a fresh read transaction.
  template <class F>
  error with_read(F&& f) const {
    std::shared_lock<std::shared_mutex> guard{resize_mtx};
    detail::txn_state st;
    st.dbs = &dbs;
    auto rc = mdb_txn_begin(env, nullptr, MDB_RDONLY, &st.txn);
    if (rc != 0) return lmdb_error(rc, "mdb_txn_begin (read)");
    auto err = f(st);
    mdb_txn_abort(st.txn);
    return err;
  }

  // -- the group commit (writer_loop.cpp) ------------------------------------

  /// Queues `req`, or answers it with `journal_closed` when stopping.
  void enqueue(request req);
  void run();
  /// The completer thread: answers what `process` hands over.
  void complete();
  void process(std::vector<request>& batch);
  /// Applies `batch` in one transaction and commits it. `committing` tells
  /// whether a failure came from `mdb_txn_commit` (the disk state is then
  /// unknown) or from before it (nothing was written).
  int try_commit(std::vector<request>& batch, std::vector<outcome>& out,
                 uint64_t& new_head, bool& wrote_events, bool& committing);
  /// The error of `req` that failed a commit alone with LMDB code `rc`:
  /// names its stream and size, and for a full map the space left.
  error request_error(const request& req, int rc);
  /// Opens the writer's cursors in `st`; returns the LMDB code.
  int open_cursors(detail::txn_state& st);
  /// Closes them; call before the transaction ends.
  void close_cursors() noexcept;
  bool grow_map();

  // -- requests in the group commit ------------------------------------------

  /// journal_appends.cpp.
  int apply(detail::txn_state& st, append_request& req, outcome& out,
            uint64_t& next_position, int64_t now_us);
  /// Stores an event-id index entry (overwriting, like mdb_put flags 0)
  /// (journal_appends.cpp).
  int put_event_id(MDB_val& key, MDB_val& val);
  /// journal_deletes.cpp; also marks a stream that `release_stream` moves.
  int apply(detail::txn_state& st, delete_request& req, outcome& out,
            uint64_t& next_position, int64_t now_us);
  /// Removes the event at `pos` (sequence `seq` of `stream`) with its tag
  /// and stream-index entries, not its event id; returns the LMDB code
  /// (journal_deletes.cpp).
  int remove_event(detail::txn_state& st, std::string_view stream, uint64_t seq,
                   uint64_t pos, const std::vector<std::string>& tags);
  /// journal_writes.cpp.
  int apply(detail::txn_state& st, write_request& req, outcome& out,
            uint64_t& next_position, int64_t now_us);
  /// Sets `out` to the `stream_moved` error of `stream` (stream_move.cpp).
  int moved_error(detail::txn_state& st, const std::string& stream,
                  outcome& out);
  /// Stores a snapshot that joined a shard's log (a leader's own, or one a
  /// replicated batch carries) and keeps its stream's `keep` newest (0:
  /// all). Returns an LMDB code (shard_snapshots.cpp).
  int store_snapshot(detail::txn_state& st, const snapshot& snap,
                     uint64_t keep);

  // -- replica requests and shard logs (replica_log.cpp) ---------------------

  /// Applies, begins an epoch or truncates.
  int apply(detail::txn_state& st, replica_request& req, outcome& out,
            uint64_t& next_position, int64_t now_us);
  int apply_records(detail::txn_state& st, replica_request& req, outcome& out,
                    uint64_t& next_position, uint64_t shard_end);
  int truncate(detail::txn_state& st, replica_request& req, outcome& out,
               uint64_t shard_end);
  /// Sets `out` to `not_leader` unless `shard` is led in `epoch` here: its
  /// newest epoch, not below its promise.
  int check_shard_epoch(detail::txn_state& st, uint32_t shard, uint64_t epoch,
                        outcome& out);
  /// The end of `shard`'s log as the transaction in progress sees it.
  int shard_end(detail::txn_state& st, uint32_t shard, uint64_t& out);
  /// Adds `position` as the next entry of `shard`'s log.
  int put_shard_entry(detail::txn_state& st, uint32_t shard, uint64_t position);
  /// Ends the transaction for the shard ends: keep or drop pending values.
  void settle_shards(bool committed);

  // -- stream heads (head_cache.cpp) -----------------------------------------

  /// Returns the cached head of `stream`, reading it on a miss; its
  /// `pending` value is what the current transaction sees.
  /// A damaged head fails only the request: `err` is set, 0 returned.
  int load_head(detail::txn_state& st, const std::string& stream,
                cached_head*& out, error& err);
  /// Stores the heads changed in the current transaction: as a record of
  /// the head log keyed by `last_position`, or, every few dozen commits or
  /// when `last_position` is 0 (no events), by folding the log and them
  /// into mnemo.streams. Sets `heads.pending_write`.
  int store_heads(detail::txn_state& st, uint64_t last_position);
  /// Writes the changed heads (in key order) into mnemo.streams.
  int flush_heads(detail::txn_state& st);
  /// Appends the changed heads to the head log as one record.
  int log_heads(detail::txn_state& st, uint64_t last_position);
  /// Writes the log's heads, then the changed ones, into mnemo.streams and
  /// empties the log.
  int fold_heads(detail::txn_state& st);
  /// `fold_heads` with the log's heads taken from the cache.
  int fold_cached_heads(detail::txn_state& st);
  /// After a commit: what its head write did to the log (`heads.logged`).
  void note_head_write();
  /// Counts the records and entries of the head log (at open).
  error count_head_log();
  /// Folds the head log in a transaction of its own (at close).
  void fold_head_log_at_close();

  // -- compaction (compaction.cpp) -------------------------------------------

  /// Rewrites mnemo.streams and mnemo.tables densely, in a child of the
  /// current transaction, when they are small and sparse.
  /// Returns an LMDB code only for a full map; other failures skip it.
  int compact_sparse(detail::txn_state& st);

  // -- statistics and listeners ----------------------------------------------

  /// Counts a successful commit of `requests` requests and `events` events
  /// (journal_stats.cpp).
  void count_commit(size_t requests, uint64_t events);
  /// Tells the commit listeners of `new_head` (commit_listeners.cpp).
  void notify(uint64_t new_head);
};

/// Appends to `out` up to `max` events with position >= `from_position`
/// read in `st`, in commit order (journal_reads.cpp).
error read_all_at(detail::txn_state& st, uint64_t from_position, size_t max,
                  std::vector<event_envelope>& out);

/// Current time in microseconds since the Unix epoch (journal.cpp).
int64_t now_micros() noexcept;

}  // namespace mnemo::persistence
