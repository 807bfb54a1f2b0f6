#pragma once

// The journal feed inside the cluster endpoint (private to runtime): serves
// this node's journal to members that follow it, and follows other
// members' journals for projections on this node. See journal_feed.hpp for
// the protocol. All functions run inside the endpoint actor.

#include <map>
#include <optional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/event_based_actor.hpp>

#include "cluster_state.hpp"
#include "mnemo/runtime/journal_feed.hpp"

namespace mnemo::runtime {

/// Remote messages of the feed: `(feed_atom, from, bytes request)` ->
/// `bytes`, and the head push `(feed_push_atom, from, bytes head)`.
using feed_atom = caf::atom_constant<caf::atom("mn_feed")>;
using feed_push_atom = caf::atom_constant<caf::atom("mn_fpush")>;
/// Local: the throttle interval of head notifications has passed.
using feed_tick_atom = caf::atom_constant<caf::atom("mn_ftick")>;
/// Local: subscribe to members that have followers here.
using feed_resub_atom = caf::atom_constant<caf::atom("mn_fresub")>;

class feed_hub {
 public:
  feed_hub(caf::event_based_actor* self, std::shared_ptr<cluster_state> st,
           journal_source source)
      : self_(self), st_(std::move(st)), source_(std::move(source)) {}

  /// Subscribes to this node's event bus, if there is one.
  void start();

  // -- serving this node's journal ------------------------------------------

  /// The local journal's head moved (from the event bus).
  void on_local_head(uint64_t head);
  /// The throttle interval has passed.
  void on_tick();
  /// A feed request of member `from`, whose identity the endpoint checked.
  caf::result<bytes> serve(const std::string& from, const bytes& payload);

  // -- following other members ----------------------------------------------

  /// `follower` (on this node) wants the heads of `member`.
  caf::result<uint64_t, bool> follow(const std::string& member,
                                     caf::actor follower);
  /// Pulls a batch from `member` for a follower.
  caf::result<feed_batch_ptr> pull(const std::string& member, uint64_t from,
                                   uint64_t max);
  /// A head notification of member `from`, whose identity was checked.
  void on_push(const std::string& from, const bytes& payload);

  // -- shard logs (a replicated cluster) --------------------------------------

  /// The commit point of `shard` known here moved on (from the replicator).
  void on_commit(uint32_t shard, uint64_t position);

  // -- membership -----------------------------------------------------------

  /// Member `id` joined and is reachable through `peer`.
  void member_up(const std::string& id, const caf::actor& peer);
  void member_down(const std::string& id);
  /// Drops a terminated follower; returns whether `addr` was one.
  bool follower_down(const caf::actor_addr& addr);
  /// Subscribes to members that have followers but no subscription yet.
  void resubscribe();
  /// Drops every handle (at exit: followers hold the endpoint's handle).
  void clear();

 private:
  void subscribe_to(const std::string& id);
  void tell_followers(const std::string& id, uint64_t head);
  void flush_heads();

  /// Whether this member holds a replica of `shard`'s log.
  bool holds(uint32_t shard);
  caf::error check_shard(uint32_t shard) const;
  caf::result<uint64_t, bool> follow_shard(uint32_t shard,
                                           caf::actor follower);
  caf::result<feed_batch_ptr> pull_shard(uint32_t shard, uint64_t from,
                                         uint64_t max);
  caf::result<bytes> serve_shard(const std::string& from,
                                 const feed::request& req);
  /// The committed events of `shard` from `from` in this member's replica.
  caf::expected<feed_batch> read_shard(uint32_t shard, uint64_t from,
                                       uint64_t max);
  /// A connected member with a replica of `shard`, its leader first ("":
  /// none).
  std::string replica_for(uint32_t shard) const;
  void subscribe_shard(uint32_t shard);
  /// Whether `shard` (held elsewhere) is followed through `member`.
  bool through(uint32_t shard, const std::string& member) const;
  /// Sends feed request `request` to `member` (its endpoint `peer`) and
  /// answers the batch it returns for a pull from `from` of `max` events,
  /// checked (a malformed one is logged as "dropped").
  caf::result<feed_batch_ptr> request_batch(const caf::actor& peer,
                                            const std::string& member,
                                            bytes request, uint64_t from,
                                            uint64_t max);
  /// Encodes `batch`, halving it while it is over the payload limit.
  caf::expected<bytes> encode_limited(feed_batch& batch);

  caf::event_based_actor* self_;
  std::shared_ptr<cluster_state> st_;
  journal_source source_;
  std::map<std::string, caf::actor> peers_;
  // Source side: members subscribed to our heads, and what each was told.
  std::map<std::string, uint64_t> subscribers_;
  uint64_t head_ = 0;
  bool cooling_ = false;
  // Follower side.
  std::map<std::string, std::set<caf::actor>> followers_;
  std::map<std::string, uint64_t> known_head_;
  std::set<std::string> subscribed_;
  // Shard logs: commit points known here; source side: members subscribed
  // to a shard's commit points, and what each was told; follower side: the
  // member a shard held elsewhere is followed through.
  std::map<uint32_t, uint64_t> commit_;
  std::map<uint32_t, std::map<std::string, uint64_t>> shard_subscribers_;
  std::map<uint32_t, std::string> shard_via_;
  // Per shard: whether this member holds a replica (computed on first use
  // and again when the replica sets changed: `holds_version_`).
  std::optional<std::vector<bool>> holds_;
  uint64_t holds_version_ = 0;
};

}  // namespace mnemo::runtime
