#pragma once

// Shard leadership decided in etcd (docs/coordination.md): each member
// holds one lease and, for every shard it is a voter of (etcd's
// `/<prefix>/shards/<n>/voters`, which replica_sets.hpp changes), a
// candidate key bound to it under `/<prefix>/shards/<n>/candidates/`; it
// ships to the shard's observers while it leads, reports them ready, and
// records its voters established once its epoch is committed. The candidate with
// the oldest key leads, with the key's create revision as its epoch; the
// coordinator tells the member's replicator to lead (which recovers the
// shard from a majority first, docs/replication.md) or to stop. A member
// that cannot renew its lease stops leading before etcd can let the lease
// expire: at `lease_ttl / 3` before its last renewal runs out, measured
// from when the renewal was sent. A member whose replicator cannot lead
// (no majority reachable) withdraws its candidacy for a while, so that
// another can lead.
//
// Three threads per member: one polls etcd every `poll` and drives the
// replicator (which may take a while to recover a shard); one renews the
// lease on a connection of its own, so that renewals never wait for the
// first; a watchdog steps down on time even while a call to etcd hangs.
// Every etcd call is bounded by the client's request timeout (at most a
// third of the TTL).

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <caf/actor.hpp>
#include <caf/expected.hpp>
#include <caf/fwd.hpp>

#include "mnemo/runtime/coordination/etcd_client.hpp"

namespace mnemo::persistence {
class journal;
}  // namespace mnemo::persistence

namespace mnemo::runtime::coordination {

/// Options of a shard coordinator.
struct coordinator_settings {
  /// Key prefix of the cluster in etcd, e.g. "/mnemo/bank".
  std::string prefix = "/mnemo/default";
  /// This member's id.
  std::string member;
  /// The replicas of each shard this member is a replica of (this member
  /// included) as it derives them, e.g. from rendezvous hashing over the
  /// members: what `leadership()` lists until the first look at etcd.
  /// From then on etcd's voters of each shard decide
  /// (`<prefix>/shards/<n>/voters`, created from etcd's shard map by the
  /// first member there): this member campaigns for the shards it is a
  /// voter of, and the first voter is the preferred leader (while a shard
  /// has no candidate, the others wait a lease TTL for it).
  std::map<uint32_t, std::vector<std::string>> replicas;
  /// TTL of the member's lease. Default 3 s (etcd raises anything below
  /// its minimum).
  std::chrono::seconds lease_ttl{3};
  /// Interval of the coordinator's look at etcd. Default 100 ms.
  std::chrono::milliseconds poll{100};
  /// How long a candidacy that failed to lead stays withdrawn. Default
  /// 1 s.
  std::chrono::milliseconds retry_after{1000};
  /// Preferred-leader election (Kafka's leader rebalance): once a shard's
  /// preferred replica (the first of `replicas`) has been a candidate for
  /// this long while another member has led the shard for this long, the
  /// leader hands the shard over: commands stop being routed to it, the
  /// appends in flight are committed (up to a second), and it resigns and
  /// queues again behind the preferred replica. Candidates that do not
  /// lead queue behind the preferred replica at once. Zero: leadership stays
  /// where failovers took it. Default 10 s.
  std::chrono::milliseconds rebalance_after{10000};
  /// The identity of this member's journal directory
  /// (`persistence::replica_log::replica_id`). Before the member takes part
  /// in any election, the coordinator compares it with the one etcd holds
  /// under `<prefix>/members/<member>/replica`: a different one means the
  /// member's data was replaced (a wiped directory), and its shards become
  /// learners until they caught up (docs/replication.md). Empty: no check
  /// (every shard not marked a learner votes).
  std::string replica_id;
  /// The whole cluster's shard map as this member derives it (JSON:
  /// `{"shards":N,"replicas":R,"sets":[[member,...],...]}`, the replicas of
  /// every shard, preferred first), e.g. `shard_map_json`. Before the
  /// member takes part in any election the coordinator compares it with
  /// `<prefix>/shard-map` in etcd, which the first member to get there
  /// creates (a compare-and-swap on the key's absence): a member with
  /// another shard count would place entities elsewhere than the rest,
  /// and one with another replication factor cannot join them, so it
  /// neither campaigns nor answers leaders until the two agree
  /// (`shard_map_error`; a map without the factor, made by a build before
  /// commit 33ed25e, is compared on its capped `replicas` instead). The
  /// replica sets may differ (a member started with another member list,
  /// e.g. one added later): the coordinator
  /// creates each shard's voters key from etcd's map where etcd has none,
  /// and counts over those keys only. Empty: no check, nothing in etcd,
  /// and `replicas` are the voters.
  std::string shard_map;
  /// Where this member listens for the others ("host:port"). The
  /// coordinator records it under `<prefix>/members/<member>/address`
  /// before it takes part in any election, and tells `on_address` where
  /// the other members announced themselves: the member directory that
  /// lets a member come back on another machine without the others
  /// changing their configuration. Empty: nothing recorded.
  std::string address;
  /// Called with (member, "host:port") for every other member's announced
  /// address when it is first read and whenever it changes; e.g.
  /// `cluster::set_address`. Calls come from the coordinator's thread.
  std::function<void(const std::string& member, const std::string& address)>
      on_address;
  /// Called with (member, true) when another member was taken out of the
  /// member directory (`forget_member` put `<prefix>/members/<id>/departed`),
  /// and with (member, false) when it came back (its coordinator deletes
  /// that key when it runs again); e.g. `cluster::set_departed`. Calls come
  /// from the coordinator's thread.
  std::function<void(const std::string& member, bool departed)> on_departed;
  /// Where etcd is.
  etcd_settings etcd;
  /// Called with (shard, member) whenever the member that commands for a
  /// shard should go to changes, for every shard with candidates in etcd:
  /// this member only while its replicator leads the shard (not while it
  /// recovers it, nor once its lease runs short), another member as etcd
  /// says, "" while none can take commands. Calls are serialized (one at a
  /// time, the latest is the truth); e.g. `cluster::set_leader`.
  std::function<void(uint32_t shard, const std::string& member)> on_leader;
  /// Called with (shard, members) for every shard whose copies (its
  /// voters, then its observers, as etcd holds them) were first read or
  /// changed; e.g. `cluster::set_replicas`. Not called without a shard
  /// map. Calls come from the coordinator's thread.
  std::function<void(uint32_t shard, const std::vector<std::string>& members)>
      on_replicas;
  /// This member's journal, whose copies of shards it no longer holds are
  /// dropped: once etcd's voters of a shard name it neither as a voter nor
  /// as an observer and a leader of those voters established them, a
  /// thread of the coordinator removes the copy (`replica_log::drop`,
  /// `drop_chunk` records per commit), stopping if the member is made a
  /// replica again meanwhile. Null: copies stay. Must outlive the
  /// coordinator. Not used without a shard map.
  persistence::journal* journal = nullptr;
  /// Records per commit when dropping a copy. Default 4096.
  uint64_t drop_chunk = 4096;
};

/// The shard map of `coordinator_settings::shard_map`: `sets[n]` are the
/// replicas of shard n, preferred first; `replicas` their number (the
/// replication factor capped at the member list's size). `factor`, if not
/// 0, is the replication factor as configured (`--cluster.replicas`),
/// which members compare regardless of their member lists.
std::string shard_map_json(uint32_t shards, size_t replicas,
                           const std::vector<std::vector<std::string>>& sets,
                           size_t factor = 0);

/// What one shard's leadership looks like from this member.
struct shard_leadership {
  uint32_t shard = 0;
  /// Whether this member leads it (its replicator accepted).
  bool leading = false;
  /// Epoch of the leadership (0 if none is known).
  int64_t epoch = 0;
  /// The leading member's id as etcd says ("" if none).
  std::string leader;
};

/// Logs one line (what, detail).
using coordinator_log =
    std::function<void(const std::string& what, const std::string& detail)>;

class shard_coordinator {
 public:
  /// Starts the coordinator's threads, which connect to etcd (and keep
  /// trying while it does not answer: until then this member neither
  /// leads nor follows). Errors: `invalid_argument` for bad endpoints.
  static caf::expected<std::unique_ptr<shard_coordinator>> start(
      caf::actor_system& sys, caf::actor replicator,
      coordinator_settings settings, coordinator_log log = {});

  /// Stops leading, withdraws from every election (revokes the lease) and
  /// stops the thread.
  ~shard_coordinator();

  /// Stops the thread without telling etcd anything (as a killed process
  /// would): its lease runs out after its TTL. For tests of failover.
  void abandon();

  /// The shards this member is a replica of, as it sees them now.
  std::vector<shard_leadership> leadership() const;

  /// Why this member takes no part: its shard count differs from the map
  /// in etcd (what differs); empty if it agrees or was not compared yet.
  std::string shard_map_error() const;

  shard_coordinator(const shard_coordinator&) = delete;
  shard_coordinator& operator=(const shard_coordinator&) = delete;

 private:
  // Each shard's voters as etcd holds them (`shards/<n>/voters`, preferred
  // first), from the last range that read them. `revision` is the key's mod
  // revision, which a candidacy is bound to (a voter set's candidates were
  // all created under it); `current` is false while the key cannot be
  // read (absent, or not a voter list): then the last good voters stay,
  // and nobody campaigns anew.
  struct shard_config {
    std::vector<std::string> voters;
    int64_t revision = 0;
    bool current = false;
    // `shards/<n>/observers`: copies that catch up without counting in
    // any majority (none while the key is absent or unreadable).
    std::vector<std::string> observers;
    // The voters before the last change (empty for a bootstrap).
    std::vector<std::string> previous;
  };

  shard_coordinator() = default;
  void run();
  void watch();
  void renew_loop();
  /// Connects `client` if it is not (a thread's own connection); waits a
  /// poll and returns false if etcd does not answer.
  bool connected(std::unique_ptr<etcd_client>& client);
  void renew(std::chrono::steady_clock::time_point now);
  /// Whether the lease may run out within the margin (or there is none).
  bool lease_short() const noexcept;
  void step_down_all(const std::string& why);
  /// Compares the journal's replica id with etcd's record of this member,
  /// tells the replicator which shards are learners, then records the id.
  /// False if etcd or the replicator did not answer (tried again).
  bool check_identity();
  /// Compares `shard_map` with etcd's (creating it if absent) and creates
  /// the voters keys that are missing; false (after a poll's wait) while
  /// etcd does not answer or the two differ.
  bool check_shard_map();
  /// Creates `<prefix>/shards/<n>/voters` from `sets[n]` for every shard
  /// that has none (transactions on the keys' absence); false (after a
  /// poll's wait) while etcd does not answer.
  bool bootstrap_voters(const std::vector<std::vector<std::string>>& sets);
  /// Takes the voters keys out of a range of `<prefix>/shards/` into
  /// `configs_`, logging each key that cannot be read once.
  void read_configs(const std::vector<etcd_kv>& shard_keys);
  /// Whether etcd's voters of `shard` (as last read) include this member.
  bool voter_of(uint32_t shard) const;
  /// For a shard this member leads in `epoch`: once its epoch marker is
  /// committed, records in `shards/<n>/established` that its voters (of
  /// `config.revision`) are established (docs/replica-set-changes.md, R4).
  void establish(uint32_t shard, int64_t epoch, const shard_config& config);
  /// For a shard this member leads: records `shards/<n>/ready/<m>` (bound
  /// to this member's lease) for each observer the replicator reports
  /// holding the commit point, and deletes the ready keys of members that
  /// observe no longer. `have`: the ready keys as read, by member.
  void mark_ready(uint32_t shard, const shard_config& config,
                  const std::map<std::string, const etcd_kv*>& have);
  /// Stops taking part in `shard`, which this member is no voter of any
  /// longer: resigns it and withdraws its candidacy.
  void leave(uint32_t shard, const std::string& own_key);
  /// Records this build's replication protocol under
  /// `<prefix>/members/<member>/protocol` (if it differs): tools change a
  /// shard's voters only while every member records one that reads them
  /// (`check_protocols`). False if etcd did not answer (tried again).
  bool announce_protocol();
  /// Puts `<prefix>/members/<member>/live` bound to the member's lease
  /// whenever the lease is new: which members run now, for tools that
  /// pick where shards go (`live_members`).
  void announce_live();
  /// Queues the copies of shards this member no longer holds for the
  /// dropper (coordinator thread; `established` as `look` read it).
  void queue_drops(const std::map<uint32_t, std::string>& established);
  /// The dropper thread: drops the queued copies one after another.
  void drop_loop();
  /// Records `address` in the member directory (if it differs); false
  /// (after a poll's wait) while etcd does not answer.
  bool announce_address();
  /// Tells `on_address` of the other members' addresses that changed
  /// since the last call, from the member directory's keys.
  void read_addresses(const std::vector<etcd_kv>& members);
  /// Logs an etcd call's failure and waits a poll before the caller
  /// retries; returns false (what the checks answer then).
  bool etcd_failed(const caf::error& err);
  void look();
  /// A shard whose oldest candidate is this member's key.
  struct lead_request {
    uint32_t shard;
    int64_t epoch;
    std::string own_key;
    std::vector<std::string> followers;
    // The voters are not established yet (the first leader after a
    // change): a majority must answer as voters (repl_lead_atom).
    bool strict = false;
  };
  /// Asks the replicator to lead all of `to_lead` at once (each recovers
  /// from a majority first) and takes the answers.
  void lead(std::vector<lead_request>& to_lead);
  /// Leadership of `shard` goes to its preferred replica, which has been
  /// a candidate long enough (preferred-leader election).
  void hand_over(uint32_t shard, int64_t epoch, const std::string& own_key);
  /// Whether the replicator reports `member` ready to take `shard` over.
  bool preferred_ready(uint32_t shard, const std::string& member);
  /// Tells `on_leader` where `shard`'s commands go now, if that changed;
  /// `etcd_leader` is the oldest candidate's member ("" if none). Holds
  /// `mtx_`.
  void publish_locked(uint32_t shard, const std::string& etcd_leader);

  caf::actor_system* sys_ = nullptr;
  caf::actor replicator_;
  coordinator_settings cfg_;
  coordinator_log log_;
  std::unique_ptr<etcd_client> etcd_;
  std::unique_ptr<etcd_client> lease_etcd_;  // the renewer's connection
  // The candidates as `look` last read them, and etcd's revision before
  // that read (0: never read). Only the coordinator's thread uses them.
  std::vector<etcd_kv> looked_;
  int64_t looked_at_ = 0;
  std::thread thread_;
  std::thread renewer_;
  std::thread watchdog_;
  std::thread dropper_;
  // The dropper's work, guarded by `drop_mtx_`: shards to drop, whether
  // this member holds each shard as etcd last said (checked before each
  // chunk), and the shards dropped since they were last held.
  std::mutex drop_mtx_;
  std::condition_variable drop_cv_;
  std::set<uint32_t> drop_queue_;
  std::map<uint32_t, bool> held_;
  std::set<uint32_t> dropped_;
  // The member's lease (0: none); written by the renewer.
  std::atomic<int64_t> lease_{0};
  // When the lease may end at the earliest, minus the margin (steady clock
  // nanoseconds; 0: no lease): the watchdog steps down past it.
  std::atomic<int64_t> lead_until_ns_{0};
  std::atomic<bool> stop_{false};
  bool abandoned_ = false;

  // Renewer thread only.
  std::chrono::steady_clock::time_point lease_valid_until_{};
  std::chrono::steady_clock::time_point last_renewal_{};
  // Coordinator thread only.
  int64_t seen_lease_ = 0;
  std::chrono::steady_clock::time_point lease_seen_at_{};
  std::map<uint32_t, std::chrono::steady_clock::time_point> withdrawn_;
  std::map<uint32_t, shard_config> configs_;
  // Voters keys found unreadable, by shard and revision: said once.
  std::map<uint32_t, int64_t> config_errors_;
  // Observers keys found unreadable, by shard and revision: said once.
  std::map<uint32_t, int64_t> observer_errors_;
  // The observers the replicator was last told of, by shard.
  std::map<uint32_t, std::vector<std::string>> observers_told_;
  // The copies `on_replicas` was last told of, by shard.
  std::map<uint32_t, std::vector<std::string>> replicas_told_;
  bool identity_checked_ = false;
  bool map_checked_ = false;
  bool address_announced_ = false;
  bool protocol_announced_ = false;
  // The lease the live key was put with (0: none yet).
  int64_t live_lease_ = 0;
  // The members `on_departed` was told are gone.
  std::set<std::string> departed_;
  // The other members' addresses `on_address` was told, by member.
  std::map<std::string, std::string> addresses_;
  // Another address etcd held for this member, once said.
  std::string own_address_seen_;
  // Preferred-leader election: since when the preferred replica's key (by
  // key) has been seen, and since when this member has led each shard.
  std::map<uint32_t, std::pair<std::string, std::chrono::steady_clock::time_point>>
      preferred_seen_;
  std::map<uint32_t, std::chrono::steady_clock::time_point> leading_since_;

  mutable std::mutex mtx_;
  std::map<uint32_t, shard_leadership> view_;  // guarded by mtx_
  std::string map_error_;                      // guarded by mtx_
  // Shards whose replicator is asked to lead right now; guarded by mtx_.
  std::set<uint32_t> pending_;
  // What `on_leader` was last told, per shard.
  std::map<uint32_t, std::string> published_;
};

}  // namespace mnemo::runtime::coordination
