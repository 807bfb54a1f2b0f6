#pragma once

// Quorum replication of shard logs between members (docs/replication.md).
// Each member runs one replicator actor over its journal. For a shard it
// leads, the replicator pushes the shard's new records to the shard's
// other replicas in pipelined batches and acknowledges an append (through
// its `shard_gate`, the journal's replication gate) once a majority of the
// replicas, itself included, hold it durably. For a shard it follows, it
// applies the leader's batches through the group commit and answers with
// its durable end. Before a leader sends records to a follower it syncs
// it: the follower promises the leader's epoch (refusing older leaders
// from then on, also after a restart), and truncates what it holds past
// the point where its epoch history and the leader's part (KIP-101).
//
// Who leads which shard in which epoch is not decided here: the
// coordination layer (etcd, docs/coordination.md) tells the replicator
// with `repl_lead_atom` / `repl_follow_atom` / `repl_resign_atom`.
//
// Messages between replicators carry only integers, strings and bytes
// (plus `repl_read_atom`, below):
// - `(repl_sync_atom, shard, epoch)` -> `(bytes epoch history, end,
//   voter)`; `voter` false: this replica is a learner (below) or its
//   member's identity is not confirmed yet, and a leader-to-be does not
//   count it towards its majority.
// - `(repl_truncate_atom, shard, epoch, keep)` -> `(end)`
// - `(repl_append_atom, bytes bundle)` -> `(bytes answers)`: a bundle
//   (`encode_bundle`) carries one batch of each of several shards the
//   sender leads, each with its epoch and commit point: a leader sends one
//   bundle per follower for everything one of its group commits added (not
//   one message per shard). The answers, item by item: an error code (0
//   for none) and message, the follower's durable end of the shard's log,
//   `accepted` (false: the batch, or an empty one's position, did not
//   continue the follower's log; the leader syncs it again) and whether the
//   follower's copy votes (not a learner).
// Errors: `stale_epoch` (persistence) when the sender's epoch is older
// than the follower's promise: the sender steps down.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/atom.hpp>
#include <caf/fwd.hpp>

#include "mnemo/persistence/replica_log.hpp"

namespace mnemo::runtime::replication {

using repl_sync_atom = caf::atom_constant<caf::atom("mn_rsync")>;
using repl_truncate_atom = caf::atom_constant<caf::atom("mn_rtrunc")>;
using repl_append_atom = caf::atom_constant<caf::atom("mn_rappend")>;
/// `(repl_read_atom, shard, from, max_records)` -> `(bytes batch)`: a
/// leader-to-be fetching records it lacks from a replica.
using repl_read_atom = caf::atom_constant<caf::atom("mn_rread")>;
/// Local: `(repl_peer_atom, member, actor)` tells where a member's
/// replicator is (an invalid actor: unreachable).
using repl_peer_atom = caf::atom_constant<caf::atom("mn_rpeer")>;
/// Local: `(repl_lead_atom, shard, epoch, std::vector<std::string>
/// followers)` -> `()` once this replica leads: it promised the epoch,
/// heard from a majority of the replicas (itself included; each promises
/// the epoch when it answers), took the records it lacked from the most
/// up-to-date of them (newest epoch, then end), began the epoch and wrote
/// its marker. Errors: `stale_epoch` if a newer epoch was promised here,
/// `owner_unavailable` if no majority answered or the most up-to-date
/// replica cannot be read; the coordinator then tries again.
/// `(repl_lead_atom, shard, epoch, followers, bool strict)`: with `strict`,
/// a majority of the replicas must answer as voters (not learners); for
/// the first leader after a change of voters, whose acknowledged records
/// may lie on a majority of the previous set (docs/replica-set-changes.md).
/// Without it, fewer voters suffice where n is even (a voter of two holds
/// everything both acknowledged).
using repl_lead_atom = caf::atom_constant<caf::atom("mn_rlead")>;
/// Local: `(repl_follow_atom, shard, leader member)`.
using repl_follow_atom = caf::atom_constant<caf::atom("mn_rfollow")>;
/// Local: `(repl_resign_atom, shard)`: stops leading or following; appends
/// waiting for a majority fail with `not_leader`.
using repl_resign_atom = caf::atom_constant<caf::atom("mn_rresign")>;
/// Local: `(repl_watch_atom)`: from now on the sender gets
/// `(repl_committed_atom, shard, position)` whenever the commit point of a
/// shard known here moves on (as leader: counted from its replicas; as
/// follower: what the leader's batches carried, up to what is durable
/// here), and at once for every shard with one. Known commit points never
/// go back: committed records are never truncated. They are not durable:
/// after a restart a follower learns them from the leader's next batch.
using repl_watch_atom = caf::atom_constant<caf::atom("mn_rwatch")>;
using repl_committed_atom = caf::atom_constant<caf::atom("mn_rcommit")>;
/// Local: `(repl_ready_atom, shard, member)` -> `bool`: whether this
/// replica leads `shard` and `member` follows it synced, as a voter, holding
/// the log up to the commit point (a preferred-leader handover to it loses
/// no time to catching up and can recover the shard).
using repl_ready_atom = caf::atom_constant<caf::atom("mn_rready")>;
/// Local: `(repl_leading_atom)` -> `std::vector<uint64_t>`: the shards
/// this replica leads now, as (shard, epoch) pairs, flattened.
using repl_leading_atom = caf::atom_constant<caf::atom("mn_rleads")>;
/// Local: `(repl_identity_atom, std::vector<uint64_t> learners)` -> `()`:
/// the coordinator compared the journal's replica id with the one etcd
/// knows for this member (docs/replication.md, "A replica that lost its
/// data"). `learners` holds (shard, epoch) pairs, flattened: those shards
/// become learners, durably: their copies do not count in a new leader's
/// majority until they caught up with the commit point of a leader of at
/// least that epoch (the shard's leader in etcd when they were marked), or
/// lead after recovering from enough voters. From then on the other shards
/// vote. Needed only with `replicator_settings::await_identity`.
using repl_identity_atom = caf::atom_constant<caf::atom("mn_rident")>;
/// Local: `(repl_status_atom, shard)` -> `(bool leading, epoch, end,
/// commit)`.
using repl_status_atom = caf::atom_constant<caf::atom("mn_rstatus")>;
/// Local: `(repl_marker_committed_atom, shard, epoch)` -> `bool`: whether
/// this replica leads `shard` in `epoch` and its commit point reached the
/// epoch's marker, i.e. a majority of the epoch's voters hold the marker
/// (what a change of voters waits for, docs/replica-set-changes.md R4).
using repl_marker_committed_atom = caf::atom_constant<caf::atom("mn_rmarkc")>;
/// Local: `(repl_observers_atom, shard, std::vector<std::string> members)`
/// -> `()`: the shard's observers (docs/replica-set-changes.md): copies
/// that catch up without counting in any majority, neither the commit
/// point nor a new leader's recovery, like etcd's learners and Kafka's
/// adding replicas. While this replica leads the shard it syncs them and
/// ships them its records like its followers; `repl_ready_atom` says when
/// one holds the commit point. Kept for the shard across leaderships
/// until told again (an empty list: none); a member that is also one of
/// `repl_lead_atom`'s followers counts as a follower.
using repl_observers_atom = caf::atom_constant<caf::atom("mn_robsrv")>;

/// The journal's replication gate (persistence::replication_gate) of one
/// member: admits appends only to the shards this member leads, and holds
/// each acknowledgement until the shard's commit point passes it. Shared
/// by the journal and the replicator; thread-safe.
class shard_gate : public persistence::replication_gate {
 public:
  persistence::expected<uint64_t> admit(uint32_t shard) override;
  void wait_committed(uint32_t shard, uint64_t epoch, uint64_t position,
                      std::function<void(persistence::error)> release) override;

  /// Replicator side: the shard is led here in `epoch` from now on (the
  /// appends still waiting from an earlier epoch fail).
  void lead(uint32_t shard, uint64_t epoch);
  /// Replicator side: the shard's commit point; releases the appends up to
  /// it.
  void commit(uint32_t shard, uint64_t position);
  /// Replicator side: the shard is no longer led here; the waiting appends
  /// fail with `not_leader` (`why` says why).
  void step_down(uint32_t shard, const std::string& why);
  /// Called with (shard, position) when a local append of a led shard is
  /// durable here and the replicator has taken the previous notification
  /// (the replicator ships it). Set before use.
  void on_local_append(std::function<void(uint32_t, uint64_t)> f);
  /// Replicator side: the greatest local position announced for `shard`;
  /// the next append notifies again.
  uint64_t take_announced(uint32_t shard);

 private:
  struct waiter {
    uint64_t position;
    std::function<void(persistence::error)> release;
  };
  struct shard_state {
    uint64_t epoch = 0;
    uint64_t committed = 0;
    std::vector<waiter> waiting;
    /// The greatest position durable here that the replicator was told of.
    uint64_t announced = 0;
    bool notify_pending = false;
  };
  std::mutex mtx_;
  std::map<uint32_t, shard_state> led_;
  std::function<void(uint32_t, uint64_t)> on_append_;
};

/// Options of a replicator.
struct replicator_settings {
  /// This member's id (for messages and logs).
  std::string member;
  /// Batches in flight per follower and shard. Default 8.
  size_t max_inflight = 8;
  /// Most records and bytes per batch. Defaults: 512 and 1 MiB.
  size_t max_batch_records = 512;
  size_t max_batch_bytes = size_t{1} << 20;
  /// Time for one request to a follower, ms; a follower that does not
  /// answer in time is synced again. Default 2000.
  size_t request_timeout_ms = 2000;
  /// Interval of the leader's ticks (retries, commit point to followers),
  /// ms. Default 50.
  size_t tick_ms = 50;
  /// Whether this replica waits for `repl_identity_atom` before any of its
  /// shards counts in a new leader's majority (a member of a replicated
  /// cluster whose coordinator checks its identity in etcd). Default false:
  /// every shard not marked a learner votes at once.
  bool await_identity = false;
};

/// Spawns the replicator of `journal` (opened with `gate` as its
/// journal_config::gate and with `shard_of`). The journal and the gate
/// must outlive the actor.
caf::actor spawn_replicator(caf::actor_system& sys,
                            persistence::journal& journal,
                            std::shared_ptr<shard_gate> gate,
                            replicator_settings settings);

/// The bytes of a batch between replicators, and back. Decoding checks
/// the format (truncated, padded) and refuses with `invalid_argument`.
std::vector<char> encode_batch(const persistence::log_batch& batch);
caf::expected<persistence::log_batch> decode_batch(const std::vector<char>& buf);

/// One shard's batch in a bundle, sent by the leader of `epoch` whose
/// commit point of the shard is `commit`.
struct bundle_item {
  uint32_t shard = 0;
  uint64_t epoch = 0;
  uint64_t commit = 0;
  persistence::log_batch batch;
};

/// The bytes of a bundle (u32 count, then per item u32 shard, u64 epoch,
/// u64 commit, u32 size and the batch's bytes), and back; decoding refuses
/// malformed bytes with `invalid_argument`, the whole bundle.
std::vector<char> encode_bundle(const std::vector<bundle_item>& items);
caf::expected<std::vector<bundle_item>> decode_bundle(
    const std::vector<char>& buf);

}  // namespace mnemo::runtime::replication
