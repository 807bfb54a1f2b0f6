#pragma once

// Projection actors: follow the journal in global commit order and keep
// read models current ("notify, then pull"). See docs/projections.md.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/atom.hpp>
#include <caf/fwd.hpp>

#include "mnemo/persistence/error.hpp"
#include "mnemo/persistence/event_envelope.hpp"
#include "mnemo/persistence/transaction.hpp"

namespace mnemo::runtime {
class metrics;
}  // namespace mnemo::runtime
#include "mnemo/runtime/restart_policy.hpp"

namespace mnemo::persistence {
class journal;
}  // namespace mnemo::persistence

namespace mnemo::runtime {
class completion_sink;
class cluster;
class node;
}  // namespace mnemo::runtime

namespace mnemo::actors {

/// `(pause_atom)` -> `caf::unit`: stops pulling; persists, so a restarted
/// projection stays paused.
using pause_atom = caf::atom_constant<caf::atom("mn_pause")>;
/// `(resume_atom)` -> `caf::unit`: pulls again; persists.
using resume_atom = caf::atom_constant<caf::atom("mn_resume")>;
/// `(reset_atom, uint64_t position)` -> `caf::unit`: sets the offset; the
/// next event handled is the one after `position`. The read model is not
/// touched.
using reset_atom = caf::atom_constant<caf::atom("mn_reset")>;
/// `(rebuild_atom)` -> `caf::unit`: clears the read model (the spec's
/// `clear`) and the offset in one transaction, then replays from the start.
using rebuild_atom = caf::atom_constant<caf::atom("mn_rebuild")>;
/// `(rebuild_shared_atom)` -> `caf::unit`: for a copy of a cluster-wide
/// read model (`cluster_wide`): clears the whole model the copies share
/// (the model's `clear`) and this copy's offset in one transaction. The
/// copy must be paused, and so must the others, which are then reset to
/// offset 0 before any resumes (`rebuild_together`): a rebuild of one copy
/// alone would wipe what the others wrote. `invalid_argument` for a copy
/// that is not paused or a projection that is no such copy.
using rebuild_shared_atom = caf::atom_constant<caf::atom("mn_rbshare")>;
/// `(caught_up_atom, uint64_t position)` -> `uint64_t`: answers with the
/// projection's offset once it has handled (or skipped) every event up to
/// global position `position`; 0 means the newest head it knows of when
/// the request arrives (for a projection of this node's journal, the
/// journal's head then: "everything committed before I asked"). It waits
/// while the projection is paused or retries a failing event, so send it
/// with a timeout; if the projection stops first, the answer is
/// `entity_stopped`. Instead of polling `status_atom` until `lag` is 0.
using caught_up_atom = caf::atom_constant<caf::atom("mn_caught")>;
/// `(status_atom)` -> `projection_status`.
using status_atom = caf::atom_constant<caf::atom("mn_status")>;
/// `(dead_letters_atom, uint64_t from_position, uint64_t max)` ->
/// `std::vector<dead_letter_info>` of this projection.
using dead_letters_atom = caf::atom_constant<caf::atom("mn_dlist")>;
/// `(retry_dead_atom, uint64_t position)` -> `caf::unit`: handles the parked
/// event again and removes the dead letter if that succeeds; otherwise
/// answers the handler's error and keeps it (with one more attempt).
using retry_dead_atom = caf::atom_constant<caf::atom("mn_dretry")>;
/// `(drop_dead_atom, uint64_t position)` -> `bool`: deletes a dead letter.
using drop_dead_atom = caf::atom_constant<caf::atom("mn_ddrop")>;

/// What happens when a handler fails on an event.
enum class failure_strategy : uint8_t {
  /// Stop at once with an error naming projection, position and cause; the
  /// supervisor restarts it from the stored offset.
  fail,
  /// Park the event in the dead-letter store and go on.
  skip,
  /// Retry with backoff up to `max_retries` times, then fail.
  retry_then_fail,
  /// Retry with backoff up to `max_retries` times, then skip.
  retry_then_skip,
};

/// Which events a projection sees. Empty fields match everything; all set
/// fields must match.
struct projection_filter {
  /// The event type is one of these.
  std::vector<std::string> event_types;
  /// The event carries at least one of these tags.
  std::vector<std::string> tags;
  /// The stream id starts with this.
  std::string stream_prefix;

  /// Returns whether `env` passes the filter.
  bool matches(const persistence::event_envelope& env) const;
};

/// Exactly-once handler: updates a read model inside the write transaction
/// that also stores the projection's offset. Runs on the journal's writer
/// thread, inside the group commit: keep it short and never block. Return
/// an error (or throw) to fail the event; its writes are rolled back.
using exactly_once_handler = std::function<persistence::error(
    persistence::write_txn&, const persistence::event_envelope&)>;

/// Grouped exactly-once handler: like `exactly_once_handler`, but called
/// once per write with all the events it handles that match the filter, in
/// order (at most `batch_size`, never none), so that a read model can fold
/// them into one update of a row many events change (a total, a counter):
/// Akka Projections' grouped exactly-once handler. Runs where the
/// per-event handler runs (on the writer thread for tail writes). If it
/// fails, its writes are rolled back and the same events are handled again
/// in groups of one, so that the failing event is found and meets the
/// failure strategy alone; the events before it are committed.
using exactly_once_group_handler = std::function<persistence::error(
    persistence::write_txn&, const std::vector<persistence::event_envelope>&)>;

/// At-least-once handler: performs side effects for a group of events
/// (`group_size`), in the projection actor. The offset is stored after it
/// returned, so after a crash the group may be handled again: the handler
/// must be idempotent. Return an error (or throw) to fail; a failed group
/// of several events is retried one event at a time to find the culprit.
using at_least_once_handler = std::function<persistence::error(
    const std::vector<persistence::event_envelope>&)>;

/// Clears a read model for a rebuild, inside the rebuild's transaction.
using clear_function =
    std::function<persistence::error(persistence::write_txn&)>;

/// Settings of a projection.
struct projection_options {
  /// Events read from the journal per pull (and per transaction).
  /// Default: 1000.
  size_t batch_size = 1000;
  /// At-least-once: events per handler call. Default: 1.
  size_t group_size = 1;
  /// Default: retry_then_fail.
  failure_strategy on_failure = failure_strategy::retry_then_fail;
  /// Retries of one event before the strategy gives up. Default: 3.
  size_t max_retries = 3;
  /// Backoff between retries (`min_backoff`, `max_backoff`, `jitter`; the
  /// intensity fields are unused). Defaults: 100 ms doubling to 10 s, 0.2.
  runtime::restart_policy retry_backoff;
  /// Seed of the jitter; 0 picks a random seed. Default: 0.
  uint64_t seed = 0;
  /// Exactly-once, local source only: handle live events inside the group
  /// commit that writes them (tail writes, see docs/projections.md), so that
  /// the read model lags by less than one commit. Those events are then
  /// read, decoded and handled on the journal's writer thread. A backlog of
  /// more than `batch_size` events (catch-up, a burst) is read off the
  /// writer thread and written through the pipeline (`write_pipeline`)
  /// until the projection is back within a batch of the head. Default:
  /// true. false: every batch is read by the projection and written in a
  /// later commit (p99 lag a few commits; the writer thread only runs the
  /// handler).
  bool in_commit = true;
  /// Exactly-once, local source: batches read and submitted before the
  /// first of them is committed (without `in_commit`, or while catching up
  /// with it). The projection then reads on while its writes wait for the
  /// group commit, instead of one read-write-commit round per batch. Each
  /// waiting write checks, in its transaction, that the one before it
  /// stored its offset: after a failure the later ones change nothing and
  /// the failure strategy starts from the failing event, as without
  /// pipelining. 1 turns it off (and `in_commit` then catches up through
  /// tail writes too). Default: 4.
  size_t write_pipeline = 4;
  /// Start a live write at most once per interval: with `in_commit` a tail
  /// write, else the read and write of the next batch (local, pipelined or
  /// one at a time, or from a remote source). The events committed in
  /// between wait, and the next write handles them together, so a read
  /// model whose rows many events touch (a balance per account) rewrites
  /// each row's page once per interval instead of in every group commit.
  /// The read model then lags by up to the interval plus one commit (plus
  /// the usual commit or two without `in_commit`); a write after a quiet
  /// interval still starts at once. Catch-up (more than `batch_size`
  /// events behind) is not slowed. Default: 0 (a live write as soon as
  /// events come).
  std::chrono::milliseconds write_interval{0};
};

/// A projection: a unique name (its offset, status and dead letters are
/// stored under it), a filter, and exactly one of the three handlers.
struct projection_spec {
  /// Unique per node; 1..200 bytes, no NUL.
  std::string name;
  /// The cluster member whose journal the projection follows; empty (the
  /// default) or this node's id: this node's journal. Another member's
  /// journal is pulled through `projection_context::cluster` in batches
  /// (notify, then pull, as locally); positions, offset and dead letters
  /// are then that member's, stored here under `name`. Read model and
  /// offset still change in one local transaction (exactly-once).
  std::string source;
  projection_filter filter;
  /// Set this for a read model in mnemo's LMDB environment.
  exactly_once_handler apply;
  /// Or this, for a read model that folds the events of a write into one
  /// update.
  exactly_once_group_handler apply_group;
  /// Or this, for external side effects.
  at_least_once_handler effect;
  /// Needed by `rebuild_atom` for exactly-once projections (`apply` or
  /// `apply_group`).
  clear_function clear;
  /// A copy of a cluster-wide read model (set by `cluster_wide`, which
  /// moves `clear` here): what `rebuild_shared_atom` clears.
  clear_function shared_clear;
  projection_options options;
};

/// What a projection needs from its node. Pointees must outlive the actor.
struct projection_context {
  persistence::journal* journal = nullptr;
  runtime::completion_sink* completions = nullptr;
  /// The node's event bus; without one the projection only catches up when
  /// poked (tests) and at start.
  caf::actor event_bus;
  /// Where the projection publishes its offset, lag and dead-letter count
  /// (label `projection`); none if null.
  runtime::metrics* metrics = nullptr;
  /// This node's cluster membership; needed by projections whose `source`
  /// is another member. Must outlive the actor.
  runtime::cluster* cluster = nullptr;

  /// Everything from `node`: its journal, completion sink, event bus,
  /// metrics and cluster (if it has one). The node must outlive the
  /// projections.
  static projection_context of(runtime::node& node);
};

/// The observable state of a projection.
struct projection_status {
  std::string name;
  /// Global position of the last event handled (or skipped).
  uint64_t offset = 0;
  /// Newest journal head the projection knows of.
  uint64_t head = 0;
  /// head - offset: how far behind it is.
  uint64_t lag = 0;
  bool paused = false;
  /// Failed attempts on the event after `offset` (0 when healthy).
  uint64_t attempts = 0;
  /// Text of the last handler failure, empty when healthy.
  std::string last_error;
  /// The member whose journal it follows; empty for this node's journal.
  std::string source;
  /// False while the source member cannot be read (not connected, its last
  /// pull failed, or not known yet just after the start); `head` is then
  /// the last head known.
  bool available = true;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, projection_status& x) {
  return f(caf::meta::type_name("projection_status"), x.name, x.offset, x.head,
           x.lag, x.paused, x.attempts, x.last_error, x.source, x.available);
}

/// A parked event, as answered by `dead_letters_atom`.
struct dead_letter_info {
  uint64_t position = 0;
  std::string stream_id;
  uint64_t sequence = 0;
  std::string type;
  std::string error;
  uint64_t attempts = 0;
  int64_t parked_at_ms = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, dead_letter_info& x) {
  return f(caf::meta::type_name("dead_letter_info"), x.position, x.stream_id,
           x.sequence, x.type, x.error, x.attempts, x.parked_at_ms);
}

/// Returns the instances of a cluster-wide read model: one copy of `spec`
/// per member of `c`'s view, so that the read model on this node follows
/// every member's journal with one offset per member. The copy for this
/// node reads the local journal and is named `spec.name + "@local"` (the
/// same whether the node runs alone or in a cluster, so that its offset
/// stays valid); the others are named `spec.name + "@" + member` with
/// `source = member`. All copies write into the same read model; each
/// commits its events and its own offset together, so a restart of any
/// node loses and repeats nothing. The copies have no `clear`: a rebuild
/// of one source would wipe what the others wrote (`rebuild_atom` answers
/// `invalid_argument`); the model is rebuilt as a whole with
/// `rebuild_together` (the copies keep the model's clear as
/// `shared_clear`). Without a cluster (`c` null), returns the local copy
/// alone.
///
/// In a replicated cluster (`c->replicated()`) every member's journal also
/// holds the shards it replicates, so following every member would count
/// each event once per replica: the copies follow the shards' logs
/// instead, one per shard, named `spec.name + "@shard/" + n` with `source =
/// "shard/<n>"` (runtime::shard_source). Each sees only committed events
/// (those a majority of the shard's replicas hold), at shard positions
/// identical on every replica, so a failover neither repeats nor skips
/// one. Events of streams outside every shard (a routed type without a
/// stream prefix, an unrouted type) are not replicated and not included.
std::vector<projection_spec> cluster_wide(const projection_spec& spec,
                                          const runtime::cluster* c);

/// Rebuilds a cluster-wide read model from its copies on this node
/// (`copies`: their names, as the supervisor `projections` routes them with
/// `runtime::route_atom`): pauses every copy, clears the model with the
/// first (`rebuild_shared_atom`) and resets the others to offset 0, then
/// resumes them all; `done` gets the first error (the copies that were
/// paused stay paused: running it again starts over). Runs as requests of
/// `self`.
void rebuild_together(caf::event_based_actor* self,
                      const caf::actor& projections,
                      std::vector<std::string> copies,
                      std::chrono::milliseconds timeout,
                      std::function<void(caf::error)> done);

/// Spawns a projection actor. It loads its offset and paused flag,
/// subscribes to the event bus, catches up from offset + 1 in batches and
/// then follows every new head through the same path. Events are handled
/// in global commit order; none is skipped (except by the `skip`
/// strategies, into the dead-letter store) and, for exactly-once handlers,
/// none is applied twice. Fails (exit reason) on a journal error or by its
/// failure strategy; supervise it. `detached` gives it its own thread
/// (recommended for slow at-least-once handlers; not under the test
/// scheduler). With `spec.source` naming another member, it follows that
/// member's journal through `ctx.cluster` instead (head notifications and
/// batched pulls; while the member is away the projection waits, shows
/// `available = false`, and resumes from its offset once it is back).
/// With `spec.source` naming a shard ("shard/<n>", replicated cluster
/// only) it follows that shard's committed log, read from this member's
/// replica or through a connected member that holds one.
/// Errors: `invalid_argument` for a bad name, not exactly one handler, or a
/// source that is neither a member nor a shard of a replicated cluster (or
/// no cluster).
caf::expected<caf::actor> spawn_projection(caf::actor_system& sys,
                                           projection_context ctx,
                                           projection_spec spec,
                                           bool detached = false);

}  // namespace mnemo::actors
