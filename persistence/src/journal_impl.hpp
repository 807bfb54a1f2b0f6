#pragma once

// Private: the state behind `journal` and the group-commit writer.

#include <atomic>
#include <condition_variable>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <variant>
#include <vector>

#include <sys/types.h>

#include <lmdb.h>

#include "lmdb_util.hpp"
#include "mnemo/persistence/dead_letter_store.hpp"
#include "mnemo/persistence/journal.hpp"
#include "mnemo/persistence/offset_store.hpp"
#include "mnemo/persistence/snapshot_store.hpp"

namespace mnemo::persistence {

/// Version of the on-disk format this build writes. It also reads formats 1
/// (format 2 without mnemo.head_log) and 2 (checkpoints every 32 events
/// instead of 128) and upgrades them on a writable open.
constexpr uint32_t written_format = 3;

/// The head record of a stream as stored in mnemo.streams.
struct head_record {
  uint64_t highest = 0;
  uint64_t deleted_to = 0;
  /// Global position of the event with sequence `highest`.
  uint64_t last_position = 0;
  /// Not stored in the record: whether `moved_table` marks the stream.
  bool moved = false;
};

/// Table (table_store) of streams that moved away: stream -> member.
constexpr std::string_view moved_table = "mnemo.moved";
/// Table of journal-wide counters; key `release_generation_key` counts
/// `release_stream` calls.
constexpr std::string_view journal_table = "mnemo.journal";
constexpr std::string_view release_generation_key = "release_generation";

/// What `journal::import_stream` adds to an append request.
struct import_info {
  /// The stream's version here that the import extends (0: a new stream).
  uint64_t expect = 0;
  /// Sequence of the first event of the request.
  uint64_t first = 1;
  /// The exported stream's deletion mark (taken by a new stream) and
  /// highest sequence.
  uint64_t deleted_to = 0;
  uint64_t highest = 0;
  /// Original commit times, per event.
  std::vector<int64_t> timestamps;
};

/// `append_request::shard` of a stream no shard log replicates.
constexpr uint32_t no_shard = UINT32_MAX;

/// An append waiting for the writer. Bodies are pre-encoded by the caller.
/// A snapshot to store with its retention (`keep` newest; 0: all).
struct snapshot_write {
  snapshot snap;
  uint64_t keep = 0;
};

struct append_request {
  /// One event of the batch.
  struct item {
    event_id id;
    /// End of this event's body in `bodies` (it starts where the previous
    /// one ends).
    size_t body_end = 0;
    /// Whether the caller supplied the id (else the journal made it).
    bool supplied = false;
  };
  std::string stream;
  std::vector<item> events;
  /// Whether any id came from the caller; ids made by the journal are new
  /// by construction and skip the id-index lookup.
  bool has_supplied_ids = false;
  std::string bodies;
  /// Tags per event; empty if no event of the batch has tags.
  std::vector<std::vector<std::string>> tags;
  expected_version expected = expected_version::any();
  append_handler done;
  /// Set for `journal::import_stream`.
  std::unique_ptr<import_info> import;
  /// The result's events, reserved by the caller's thread so that the
  /// writer does not allocate them.
  std::vector<event_ref> results;
  /// The shard log the events join (journal_config::shard_of), or none.
  uint32_t shard = no_shard;
  /// The epoch the replication gate admitted the append in (0: no gate).
  uint64_t shard_epoch = 0;
  /// Set for a snapshot that joins its shard's log (`snapshot_store::save`
  /// of a shard's stream): the one event of the request carries it, and
  /// the writer stores it in mnemo.snapshots in the same transaction.
  std::unique_ptr<snapshot_write> snapshot;
};

struct delete_request {
  std::string stream;
  uint64_t to_sequence;
  write_handler done;
  /// Set for `journal::release_stream`: the member the stream moved to.
  std::string moved_to;
};

struct write_request {
  write_function fn;
  write_handler done;
  /// Runs after the appends and deletions of its group commit.
  bool after_appends = false;
};

/// A request of `replica_log` (replica_log.cpp).
struct replica_request {
  enum class kind { apply, begin_epoch, truncate, set_learner };
  kind what = kind::apply;
  uint32_t shard = 0;
  /// apply: the sender's epoch; begin_epoch: the new epoch.
  uint64_t leader_epoch = 0;
  /// apply: the records (their epoch and first position); truncate: keeps
  /// positions <= `batch.first_position`.
  uint64_t records_epoch = 0;
  uint64_t position = 0;
  std::vector<std::string> records;
  /// apply: the leader's commit point the batch carried (0: none); kept
  /// (`replica_log::committed`) up to the log's end after the batch.
  uint64_t commit = 0;
  /// set_learner: the shards and whether they become learners (true) or
  /// voters again.
  std::vector<uint32_t> shards;
  std::vector<uint64_t> epochs;  // per shard: the epoch that may clear it
  bool learner = false;
  /// truncate: the replica drops its copy (replica_log::drop): committed
  /// records go too, and the committed point follows them down; refused
  /// (writing nothing) unless the shard's promise is still `expect_promise`
  /// and its end `expect_end` (no leader wrote to it since the caller
  /// checked it may drop).
  bool drop = false;
  uint64_t expect_promise = 0;
  uint64_t expect_end = 0;
  write_handler done;
};

using request = std::variant<append_request, delete_request, write_request,
                             replica_request>;

/// The result of one request inside a group commit.
using outcome = std::variant<error, append_result>;

struct journal::impl {
  explicit impl(journal& self, journal_config config)
      : cfg(std::move(config)),
        snapshots(self),
        offsets(self),
        dead_letters(self) {}

  journal_config cfg;
  MDB_env* env = nullptr;
  // `mnemo.lock` in the directory, flock'ed while a writer has it open.
  int lock_fd = -1;
  // The directory's entry in the process's set of open directories.
  std::optional<std::pair<dev_t, ino_t>> claimed;
  databases dbs;
  // Readers hold it shared; the writer holds it exclusively to resize.
  mutable std::shared_mutex resize_mtx;
  std::atomic<uint64_t> head{0};
  std::atomic<uint64_t> map_size{0};
  // The directory's format version, as opened (or upgraded).
  uint64_t stored_format = written_format;
  // The directory's identity: 16 bytes from meta `replica_id` (empty for
  // an older directory opened read-only).
  std::string replica_id;

  std::mutex mtx;
  std::condition_variable cv;
  std::vector<request> queue;
  bool stopping = false;
  error sticky;  // guarded by mtx
  std::thread writer;

  // Append completions of committed group commits, answered in commit
  // order by the completer thread while the writer goes on with the next
  // commit.
  // The whole batch goes over, by move: requests other than appends in it
  // were answered by the writer and are only destroyed here. The emptied
  // vectors come back through `spare` and keep their capacity, so that a
  // group commit of hundreds of requests neither moves them one by one
  // nor allocates fresh (page-faulting) memory for them.
  struct answered {
    std::vector<request> requests;
    std::vector<outcome> outcomes;
  };
  std::mutex done_mtx;
  std::condition_variable done_cv;
  std::vector<answered> done_queue;
  std::vector<answered> spare;  // guarded by done_mtx
  // Writer thread only: an empty outcome vector with capacity.
  std::vector<outcome> spare_outcomes;
  bool done_stopping = false;
  std::thread completer;

  // Writer thread only: cached stream heads. `pending` is what the
  // transaction in progress sees; `committed` what is on disk.
  struct cached_head {
    head_record committed;
    head_record pending;
    bool dirty = false;
    /// Whether `committed` is in the head log (in `logged_heads`).
    bool logged = false;
    /// The key of this entry in `heads` (node addresses are stable).
    const std::string* stream = nullptr;
    /// The first 16 bytes of the key, big-endian, zero-padded: sorts like
    /// the key unless both are equal (see `flush_heads`).
    uint64_t order[2] = {0, 0};
  };
  // Writer thread only: `dirty_heads` in key order, rebuilt per commit.
  struct head_order {
    uint64_t hi, lo;
    cached_head* entry;
  };
  std::vector<head_order> sorted_heads;
  std::unordered_map<std::string, cached_head> heads;
  std::vector<cached_head*> dirty_heads;
  // Writer thread only: records and entries in mnemo.head_log (as
  // committed), and what the transaction in progress does to it.
  uint64_t log_records = 0;
  uint64_t log_entries = 0;
  enum class head_write { none, logged, folded } pending_heads{};
  // Writer thread only: the cached heads that are in the committed head
  // log. While `log_in_cache` holds, these are all of the log's streams
  // (the log was empty at open and the cache has not been cleared since),
  // and a fold writes them from the cache instead of reading the log.
  std::vector<cached_head*> logged_heads;
  bool log_in_cache = true;
  // Writer thread only: the heads a fold from the cache writes, sorted.
  std::vector<head_order> fold_cached;
  // Writer thread only: scratch space of `fold_heads`, kept for its
  // capacity.
  std::unordered_map<std::string_view, head_record> fold_heads_map;
  std::vector<const std::pair<const std::string_view, head_record>*> fold_order;
  // Writer thread only: why the last failed commit failed when that is not
  // an LMDB code (a damaged head log record found while folding).
  error commit_error;
  // Writer thread only: entries of mnemo.streams and mnemo.tables when
  // `compact_sparse` last considered them.
  uint64_t compaction_seen[2] = {0, 0};
  // Writer thread only: cursors on mnemo.event_ids and mnemo.events in the
  // transaction in progress (null outside one).
  MDB_cursor* event_ids_cursor = nullptr;
  MDB_cursor* events_cursor = nullptr;

  std::mutex listeners_mtx;
  std::map<uint64_t, commit_listener> listeners;
  uint64_t next_token = 1;

  // Written by the writer thread, read by `journal::stats`.
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
  // Writer thread only: the end of each shard log (replica_log.cpp) as
  // committed, and as the transaction in progress changed it.
  std::unordered_map<uint32_t, uint64_t> shard_ends;
  std::unordered_map<uint32_t, uint64_t> pending_shard_ends;
  // Writer thread only: shards that local appends of the transaction in
  // progress wrote to (a truncation of one of them waits for the next).
  std::vector<uint32_t> appended_shards;
  // Writer thread only: duration of the last `mdb_txn_commit`.
  uint64_t last_commit_us = 0;

  snapshot_store snapshots;
  offset_store offsets;
  dead_letter_store dead_letters;

  // -- setup (journal.cpp) ---------------------------------------------------

  error open_env();
  error open_databases();

  // -- reads (journal.cpp) ---------------------------------------------------

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

  // -- writer (writer.cpp) ---------------------------------------------------

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
  int apply(detail::txn_state& st, append_request& req, outcome& out,
            uint64_t& next_position, int64_t now_us);
  int apply(detail::txn_state& st, delete_request& req, outcome& out,
            uint64_t& next_position, int64_t now_us);
  int apply(detail::txn_state& st, write_request& req, outcome& out,
            uint64_t& next_position, int64_t now_us);
  /// replica_log.cpp: applies, begins an epoch or truncates.
  int apply(detail::txn_state& st, replica_request& req, outcome& out,
            uint64_t& next_position, int64_t now_us);
  int apply_records(detail::txn_state& st, replica_request& req, outcome& out,
                    uint64_t& next_position, uint64_t shard_end);
  /// Stores a snapshot that joined a shard's log (a leader's own, or one a
  /// replicated batch carries) and keeps its stream's `keep` newest (0:
  /// all). Returns an LMDB code.
  int store_snapshot(detail::txn_state& st, const snapshot& snap,
                     uint64_t keep);
  int truncate(detail::txn_state& st, replica_request& req, outcome& out,
               uint64_t shard_end);
  /// Sets `out` to `not_leader` unless `shard` is led in `epoch` here: its
  /// newest epoch, not below its promise (replica_log.cpp).
  int check_shard_epoch(detail::txn_state& st, uint32_t shard, uint64_t epoch,
                        outcome& out);
  /// The end of `shard`'s log as the transaction in progress sees it.
  int shard_end(detail::txn_state& st, uint32_t shard, uint64_t& out);
  /// Adds `position` as the next entry of `shard`'s log.
  int put_shard_entry(detail::txn_state& st, uint32_t shard,
                      uint64_t position);
  /// Ends the transaction for the shard ends: keep or drop pending values.
  void settle_shards(bool committed);
  /// Removes the event at `pos` (sequence `seq` of `stream`) with its tag
  /// and stream-index entries, not its event id; returns the LMDB code.
  int remove_event(detail::txn_state& st, std::string_view stream,
                   uint64_t seq, uint64_t pos,
                   const std::vector<std::string>& tags);
  /// Returns the cached head of `stream`, reading it on a miss; its
  /// `pending` value is what the current transaction sees.
  /// A damaged head fails only the request: `err` is set, 0 returned.
  int load_head(detail::txn_state& st, const std::string& stream,
                cached_head*& out, error& err);
  /// Sets the head of `stream` in the current transaction.
  void store_head(cached_head& entry, const head_record& value);
  /// Ends the transaction for the cached heads: keep or drop pending values.
  void settle_heads(bool committed);
  /// Stores the heads changed in the current transaction: as a record of
  /// the head log keyed by `last_position`, or, every few dozen commits or
  /// when `last_position` is 0 (no events), by folding the log and them
  /// into mnemo.streams. Sets `pending_heads`.
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
  /// After a commit: what its head write did to the log (`logged_heads`).
  void note_head_write();
  /// Sorts `dirty_heads` by stream into `sorted_heads`.
  void sort_dirty_heads();
  /// Stream id and pending head of `sorted_heads[i]`.
  std::pair<std::string_view, const head_record&> sorted_head(
      size_t i) const noexcept {
    auto* entry = sorted_heads[i].entry;
    return {*entry->stream, entry->pending};
  }
  /// Counts the records and entries of the head log (at open).
  error count_head_log();
  /// Folds the head log in a transaction of its own (at close).
  void fold_head_log_at_close();
  /// Rewrites mnemo.streams and mnemo.tables densely, in a child of the
  /// current transaction, when they are small and sparse (writer.cpp).
  /// Returns an LMDB code only for a full map; other failures skip it.
  int compact_sparse(detail::txn_state& st);
  /// Opens the writer's cursors in `st`; returns the LMDB code.
  int open_cursors(detail::txn_state& st);
  /// Closes them; call before the transaction ends.
  void close_cursors() noexcept;
  /// Stores an event-id index entry (overwriting, like mdb_put flags 0).
  int put_event_id(MDB_val& key, MDB_val& val);
  /// Sets `out` to the `stream_moved` error of `stream`.
  int moved_error(detail::txn_state& st, const std::string& stream,
                  outcome& out);
  bool grow_map();
  /// Counts a successful commit of `requests` requests and `events` events.
  void count_commit(size_t requests, uint64_t events);
  void notify(uint64_t new_head);
};

/// Appends to `out` up to `max` events with position >= `from_position`
/// read in `st`, in commit order.
error read_all_at(detail::txn_state& st, uint64_t from_position, size_t max,
                  std::vector<event_envelope>& out);

/// Reads the head record of `stream` in `st`; zeroes if absent.
error read_head(detail::txn_state& st, std::string_view stream,
                head_record& out);

/// Encodes a head record (24 bytes).
void encode_head(const head_record& head, char* out) noexcept;

/// Calls `visit(sequence, position, record)` for the events of `stream` with
/// sequence in [first, last], newest first, following the back links from
/// the nearest checkpoint at or above `last`. Preconditions: `head` is the
/// stream's head, `head.deleted_to < first <= last <= head.highest`.
/// Errors: `corrupt_record` (broken link or record), `storage_error`.
template <class Visit>
error walk_stream(detail::txn_state& st, std::string_view stream,
                  const head_record& head, uint64_t first, uint64_t last,
                  Visit&& visit);

/// Submits a request with `submit(handler)` and waits for its error.
template <class F>
error blocking(F&& submit) {
  std::promise<error> promise;
  auto future = promise.get_future();
  submit([&promise](error err) { promise.set_value(std::move(err)); });
  return future.get();
}

/// Current time in microseconds since the Unix epoch.
int64_t now_micros() noexcept;

}  // namespace mnemo::persistence

// -- walk_stream
// ---------------------------------------------------------------

#include "record_codec.hpp"

namespace mnemo::persistence {

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
