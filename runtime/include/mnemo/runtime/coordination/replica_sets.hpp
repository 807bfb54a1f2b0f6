#pragma once

// Changing a shard's replica set in etcd while the cluster runs
// (docs/replica-set-changes.md, docs/coordination.md). Each function reads
// the shard's keys, checks what the change needs, and makes it in one etcd
// transaction guarded by the revisions it read, so that two operators (or
// tools) racing on one shard cannot both win a step:
//
// - `observe`: a member becomes an observer, a copy that catches up from
//   the leader without counting in any majority (the epoch stays).
// - `promote`: an observer that a leader reported holding its commit point
//   (`ready`) becomes a voter, one member added (R1).
// - `remove_voter`: a voter leaves the set, one member removed (R1).
// - `abort_change`: the voters go back to the set before the last change.
//
// A change of voters deletes the shard's candidacies in the same
// transaction (R2): the next leader is elected among the new voters, and
// recovers from a majority of them, which fences the old leader (R3).
// Before a further change of voters, a leader of the new set must have
// committed its epoch marker on a majority of it, which its coordinator
// records as `established` (R4); an abort needs no such leader, since it
// is itself one step from the set it undoes.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <caf/expected.hpp>

#include "mnemo/runtime/coordination/etcd_client.hpp"

namespace mnemo::runtime::coordination {

/// One shard's replica set as etcd holds it.
struct replica_set {
  uint32_t shard = 0;
  /// The voters, preferred first.
  std::vector<std::string> voters;
  /// The voters before the last change (empty: none recorded).
  std::vector<std::string> previous;
  std::vector<std::string> observers;
  /// The observers a leader reported holding its commit point.
  std::vector<std::string> ready;
  /// Mod revision of the voters key: the set's identity.
  int64_t revision = 0;
  /// Mod revision of the observers key (0: there is none).
  int64_t observers_revision = 0;
  /// Whether a leader of these voters committed its epoch marker on a
  /// majority of them (R4): a further change of voters may follow.
  bool established = false;
  /// The oldest candidate's member and its key's create revision (the
  /// epoch): the leader, or the member that is becoming it ("" and 0: no
  /// candidate).
  std::string leader;
  int64_t epoch = 0;
};

/// Checks that every member of the cluster's member directory
/// (`<prefix>/members/<id>/...`) records a replication protocol that reads
/// the shards' voters keys (`<prefix>/members/<id>/protocol` >= 2): a
/// member of an older build counts majorities over the shard map, so a
/// change of voters would leave it counting over other replicas than the
/// rest. Errors: `invalid_argument` naming the members that do not, and
/// the client's errors. `promote`, `remove_voter` and `abort_change` check
/// this before they change anything.
caf::error check_protocols(etcd_client& etcd, const std::string& prefix);

/// Reads shard `shard`'s keys under `<prefix>/shards/<shard>/`. Errors:
/// `not_found` if the shard has no voters key (no member has created it
/// from the shard map yet), `invalid_argument` if it holds no voter list,
/// and the client's errors.
caf::expected<replica_set> read_replica_set(etcd_client& etcd,
                                            const std::string& prefix,
                                            uint32_t shard);

/// Makes `member` an observer of the shard; the set as it is then.
/// Nothing changes if it already is one. Errors: `invalid_argument` if it
/// is a voter; `conflict` if the keys changed since they were read.
caf::expected<replica_set> observe(etcd_client& etcd, const std::string& prefix,
                                   uint32_t shard, const std::string& member);

/// `member` observes the shard no longer (its ready key goes too).
/// Nothing changes if it is no observer. Errors: `conflict`.
caf::expected<replica_set> unobserve(etcd_client& etcd,
                                     const std::string& prefix, uint32_t shard,
                                     const std::string& member);

/// Makes observer `member` a voter, last in the order. Errors:
/// `invalid_argument` if it is no observer, no leader reported it ready,
/// or the current voters are not established yet; `conflict`.
caf::expected<replica_set> promote(etcd_client& etcd, const std::string& prefix,
                                   uint32_t shard, const std::string& member);

/// Removes voter `member`. Errors: `invalid_argument` if it is no voter,
/// the last one, or the current voters are not established yet;
/// `conflict`.
caf::expected<replica_set> remove_voter(etcd_client& etcd,
                                        const std::string& prefix,
                                        uint32_t shard,
                                        const std::string& member);

/// Puts back the voters before the last change. Errors:
/// `invalid_argument` if none are recorded; `conflict`.
caf::expected<replica_set> abort_change(etcd_client& etcd,
                                        const std::string& prefix,
                                        uint32_t shard);

/// The next step of replacing one member of a shard's replica set by
/// another (KIP-455's add-then-remove): observe the new member, promote it
/// once a leader reported it ready, then remove the old one, each step
/// only when the voters are established (R4).
struct replace_step {
  enum kind {
    /// Nothing left to do: the new member votes and the old one holds no
    /// copy, or the old one held none to begin with.
    done,
    /// Wait and read again (`why` says for what).
    wait,
    observe_new,
    promote_new,
    remove_old,
    /// The old member observes the shard: it stops.
    unobserve_old,
    /// The replacement cannot go on (`why` says why): the new member votes
    /// already, and removing the old one would leave fewer voters than
    /// the set had before the new one came in. Two replacements racing on
    /// one shard (c by d against b by d) end so: the one whose removal
    /// came second is refused instead of shrinking the set.
    refused,
  };
  kind what = done;
  std::string why;
};

/// The members that run now: those whose coordinator holds a lease with
/// `<prefix>/members/<id>/live` bound to it, in id order.
caf::expected<std::vector<std::string>> live_members(etcd_client& etcd,
                                                     const std::string& prefix);

/// Where each shard of `member` goes when it leaves the cluster: for every
/// set of `sets` that names it (voter or observer), a member of `live`
/// (not `member`) that holds no copy of the shard. A member that already
/// observes the shard is kept (a decommission that stopped half way
/// resumes with the same targets); otherwise the member that holds the
/// fewest copies, counting the ones planned so far, ties by id. Errors:
/// `invalid_argument` naming the shards that no live member can take (the
/// replication factor would shrink: add a member first).
caf::expected<std::map<uint32_t, std::string>> plan_decommission(
    const std::vector<replica_set>& sets, const std::vector<std::string>& live,
    const std::string& member);

/// Takes `member` out of the member directory for good: its address,
/// replica id and protocol keys go, and `<prefix>/members/<id>/departed`
/// tells the others to stop connecting to it and to refuse its joins
/// (`coordinator_settings::on_departed`). Refused (`invalid_argument`)
/// while it runs (it has a live key) or any shard's voters or observers
/// name it (decommission it first). Should it run again, its coordinator
/// deletes the departed key and it rejoins. Returns the ids of the keys it
/// deleted.
caf::expected<std::vector<std::string>> forget_member(
    etcd_client& etcd, const std::string& prefix, const std::string& member);

/// Whether `member`'s copy of a shard with these voters, observers and
/// voters before the last change (`previous`) may be dropped: it is
/// neither voter nor observer, and an explicit change removed it (it is
/// among `previous`; voters that never named it, as after a bootstrap
/// from another member's map, say nothing about its copy).
bool removed_by_change(const std::vector<std::string>& voters,
                       const std::vector<std::string>& observers,
                       const std::vector<std::string>& previous,
                       const std::string& member);

/// What replacing `old_member` by `new_member` needs next in `s` (a pure
/// function of the set: a tool re-reads the set and asks again after each
/// step, so a run that stopped half way resumes where it stood). The old
/// member is removed only while the set is larger than before its last
/// change (the new member's promotion, or any growth that left it above
/// the size it had): a replacement never shrinks a set, whoever else
/// changes it meanwhile; otherwise the step is `refused`.
replace_step next_replace_step(const replica_set& s,
                               const std::string& old_member,
                               const std::string& new_member);

/// Takes the next step of replacing `old_member` by `new_member` in `s`,
/// a set as read, if one can be taken now, guarded by the revisions of
/// that read (a change since is a `conflict`, returned as a `wait`).
/// Returns the step it took (`done`, `wait` or `refused` if none) and the
/// set after it. Errors: as `replace_member`.
caf::expected<std::pair<replace_step, replica_set>> take_replace_step(
    etcd_client& etcd, const std::string& prefix, const replica_set& s,
    const std::string& old_member, const std::string& new_member);

/// Reads shard `shard`'s set, and takes the next step of replacing
/// `old_member` by `new_member` if one can be taken now. Returns the step
/// it took (`done`, `wait` or `refused` if none) and the set after it. A
/// lost race (`conflict`) is a `wait`: the next call reads again. Errors: those of
/// `read_replica_set` and of the step, `invalid_argument` if the two ids
/// are the same or not ids.
caf::expected<std::pair<replace_step, replica_set>> replace_member(
    etcd_client& etcd, const std::string& prefix, uint32_t shard,
    const std::string& old_member, const std::string& new_member);

}  // namespace mnemo::runtime::coordination
