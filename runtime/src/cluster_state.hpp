#pragma once

// The state a cluster's endpoint and routers share (private to runtime).

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <caf/actor.hpp>

#include "mnemo/runtime/cluster.hpp"
#include "mnemo/runtime/cluster_view.hpp"

namespace mnemo::runtime {

struct cluster_state {
  explicit cluster_state(cluster_view v) : view(std::move(v)) {}
  cluster_view view;
  /// What members compare at join: the view's fingerprint (member ids
  /// and shard count) in a static cluster; the shard count and the
  /// replication settings in a replicated one, whose members come and go
  /// through etcd's member directory.
  std::string fingerprint;
  /// Older forms of the fingerprint this member also accepts and offers
  /// (a rolling upgrade from builds that sent them), newest first.
  std::vector<std::string> older_fingerprints;
  std::string self;
  std::string secret;
  std::chrono::milliseconds retry;
  /// Time for one request to another member.
  std::chrono::milliseconds request_timeout{10000};
  /// Shortest interval between two head notifications to one member.
  std::chrono::milliseconds feed_interval{5};
  bool tls = false;
  /// `cluster_settings::max_message_bytes` less room for the envelope
  /// around a payload: the most bytes a command, reply or batch may have.
  size_t max_payload = (size_t{16} << 20) - 65536;
  cluster_log log;
  /// Members joined in both directions, for `cluster::connected`.
  mutable std::mutex mtx;
  std::set<std::string> joined;
  /// Replicated cluster: members outside the view that announced
  /// themselves in etcd's member directory (cluster::set_address), for
  /// `cluster::members`. Guarded by `mtx`.
  std::set<std::string> directory;
  /// Replicated cluster: members taken out of the directory
  /// (cluster::set_departed). Guarded by `mtx`.
  std::set<std::string> departed;

  // -- replicated cluster -----------------------------------------------------
  /// Null in a static cluster.
  std::shared_ptr<stream_shards> streams;
  /// Replicas per shard (at most the member count); 0 in a static cluster.
  size_t replicas = 0;
  /// Guards `leaders` and `locals`.
  mutable std::mutex leader_mtx;
  /// Per shard: the member that leads it ("": none known).
  std::vector<std::string> leaders;
  /// The local registry of each routed type.
  std::vector<std::pair<std::string, caf::actor>> locals;
  /// What runs when this member comes to lead a shard (cluster::on_lead).
  std::vector<std::function<void(uint32_t)>> on_lead;
  /// Per shard: the members holding a copy of its log as etcd says
  /// (voters and observers, cluster::set_replicas); a shard without an
  /// entry has the view's replica set. Guarded by `leader_mtx`;
  /// `replicas_version` counts their changes, read without the lock on
  /// every shard read (feed_hub::holds).
  std::map<uint32_t, std::vector<std::string>> live_replicas;
  std::atomic<uint64_t> replicas_version{0};

  /// The members holding a copy of `shard`'s log.
  std::vector<std::string> replicas_of(uint32_t shard) const {
    {
      std::lock_guard<std::mutex> guard{leader_mtx};
      if (auto i = live_replicas.find(shard); i != live_replicas.end())
        return i->second;
    }
    return view.replicas_of(shard, replicas);
  }

  /// The member commands for `shard` go to: its leader in a replicated
  /// cluster ("" if none), else the member list's owner.
  std::string leader_of(uint32_t shard) const {
    if (!streams) return view.owner_of(shard);
    std::lock_guard<std::mutex> guard{leader_mtx};
    return shard < leaders.size() ? leaders[shard] : std::string{};
  }

  /// Where a message to entity (`type`, `id`) goes.
  std::string owner(const std::string& type, const std::string& id) const {
    return leader_of(view.shard_of(type, id));
  }
};

}  // namespace mnemo::runtime
