#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/expected.hpp>

#include "mnemo/persistence/event_registry.hpp"
#include "mnemo/persistence/journal.hpp"
#include "mnemo/runtime/completion_sink.hpp"
#include "mnemo/runtime/metrics.hpp"
#include "mnemo/runtime/node_config.hpp"

namespace mnemo::runtime {

namespace coordination {
class shard_coordinator;
}  // namespace coordination

/// A running node: the journal of its data directory, the event registry,
/// the CAF actor system and the event bus. Destroying it shuts down cleanly:
/// the journal stops telling the event bus about commits, the bus and every
/// actor spawned through `track` get an exit message, the node waits for all
/// actors, lets the journal finish its queue, then stops the system.
class node {
 public:
  /// Opens the journal in `cfg.data_dir`, starts the actor system and the
  /// event bus.
  /// `cfg` must outlive the node. Errors: persistence errors of
  /// `journal::open`, translated; `invalid_argument` for bad options.
  static caf::expected<std::unique_ptr<node>> start(node_config& cfg);

  ~node();

  node(const node&) = delete;
  node& operator=(const node&) = delete;

  caf::actor_system& system() noexcept { return *system_; }
  persistence::journal& journal() noexcept { return *journal_; }
  persistence::event_registry& registry() noexcept { return registry_; }
  completion_sink& completions() noexcept { return *sink_; }
  const node_config& config() const noexcept { return cfg_; }

  /// The node's event bus: tells subscribers the journal's new head position
  /// after commits; see `spawn_event_bus` for its protocol and the
  /// subscriber contract. Valid until the node is destroyed.
  const caf::actor& event_bus() const noexcept { return bus_; }

  /// The node's metrics: the journal's counters (commits, events per
  /// commit, commit durations, map size, dead letters) from the start, and
  /// whatever registries, projections and services add.
  runtime::metrics& metrics() noexcept { return *metrics_; }

  /// This node's cluster membership, or null if it runs alone.
  runtime::cluster* cluster() noexcept { return cluster_.get(); }

  /// In a replicated cluster (`--cluster.etcd`): the coordinator that takes
  /// part in the shards' elections in etcd; else null. It starts once the
  /// node has started; `start_replication` tells it to.
  coordination::shard_coordinator* coordinator() noexcept {
    return coordinator_.get();
  }

  /// In a replicated cluster: starts taking part in the shards' elections
  /// (before, this member neither leads nor follows, so its shards wait for
  /// it only if no majority of their replicas is up). Call it once the
  /// node's services have routed their types through the cluster (their
  /// streams are replicated from then on). Does nothing otherwise.
  /// Errors: those of connecting to etcd.
  caf::error start_replication();

  /// Remembers `handle` so that shutdown sends it an exit message.
  void track(const caf::actor& handle);

 private:
  explicit node(node_config& cfg);
  void add_journal_metrics();

  node_config& cfg_;
  persistence::event_registry registry_;
  std::unique_ptr<runtime::metrics> metrics_;
  std::vector<uint64_t> journal_metrics_;
  std::unique_ptr<persistence::journal> journal_;
  std::unique_ptr<completion_sink> sink_;
  std::unique_ptr<caf::actor_system> system_;
  std::unique_ptr<runtime::cluster> cluster_;
  cluster_log cluster_log_;
  caf::actor replicator_;
  std::unique_ptr<coordination::shard_coordinator> coordinator_;
  std::vector<caf::actor> tracked_;
  caf::actor bus_;
  uint64_t bus_listener_ = 0;
};

}  // namespace mnemo::runtime
