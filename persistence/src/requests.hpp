#pragma once

// Private: the requests the group-commit writer (writer_loop.cpp) takes from
// its queue, and what it answers each with. Callers on any thread build one
// (the appends, deletes, writes and replica requests of journal and
// replica_log), `journal::impl::enqueue` hands it to the writer thread, and
// the writer applies it in one transaction with the others of its batch.

#include <cstdint>
#include <future>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "mnemo/persistence/journal.hpp"
#include "mnemo/persistence/snapshot_store.hpp"

namespace mnemo::persistence {

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

/// A snapshot to store with its retention (`keep` newest; 0: all).
struct snapshot_write {
  snapshot snap;
  uint64_t keep = 0;
};

/// An append waiting for the writer. Bodies are pre-encoded by the caller.
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

/// Submits a request with `submit(handler)` and waits for its error.
template <class F>
error blocking(F&& submit) {
  std::promise<error> promise;
  auto future = promise.get_future();
  submit([&promise](error err) { promise.set_value(std::move(err)); });
  return future.get();
}

// -- building appends (journal_appends.cpp) ----------------------------------

/// Checks `events` and encodes them into `req` (whose stream is set).
error prepare_append(append_request& req, std::vector<new_event>& events);

/// Fails an append to a shard's log whose events would be records larger
/// than `limit` (0: none).
error check_record_sizes(const append_request& req, size_t limit);

/// An append to a shard's log with a gate: asks it to admit `req` (in the
/// epoch it names) and makes `done` wait until the shard's majority holds
/// the append. Returns false, having failed `done`, if the gate refuses.
bool through_gate(const std::shared_ptr<replication_gate>& gate,
                  append_request& req, append_handler& done);

}  // namespace mnemo::persistence
