#pragma once

#include <cstddef>
#include <string>

#include <caf/actor_system_config.hpp>
#include <caf/expected.hpp>

#include "mnemo/persistence/journal_config.hpp"
#include "mnemo/runtime/cluster.hpp"
#include "mnemo/runtime/entity_registry.hpp"

namespace mnemo::runtime {

/// Configuration of a mnemo node: CAF's own options plus mnemo's, read from
/// `caf-application.ini` (INI sections) and the command line; `--help`
/// lists them. Registers mnemo's error categories and defaults the scheduler
/// to one worker per core.
struct node_config : caf::actor_system_config {
  /// --data-dir: the node's data directory. Default: "data".
  std::string data_dir = "data";
  /// --durability: sync | nometasync | nosync. Default: "sync".
  std::string durability = "sync";
  /// --initial-map-mib: initial LMDB map size in MiB (grows on demand).
  /// Default: 64.
  size_t initial_map_mib = 64;
  /// --snapshot-every: take a snapshot of an aggregate (or of a saga's
  /// progress, `saga_context::snapshot_every`) every N events; 0 disables
  /// snapshots. Default: 1000.
  size_t snapshot_every = 1000;
  /// --snapshot-keep: snapshots kept per aggregate. Default: 2.
  size_t snapshot_keep = 2;
  /// --delete-events-on-snapshot: delete events covered by the oldest kept
  /// snapshot. Default: false.
  bool delete_events_on_snapshot = false;
  /// --stash-limit: commands an aggregate buffers while recovering or
  /// persisting; more are answered with `stash_overflow`. Default: 10000.
  size_t stash_limit = 10000;
  /// --passivation-timeout-s: idle seconds before an entity passivates.
  /// Default: 300.
  size_t passivation_timeout_s = 300;
  /// --max-active-entities: active entities before the least recently used
  /// passivates. Default: 100000.
  size_t max_active_entities = 100000;
  /// --restart-min-backoff-ms: delay before restarting a crashed actor; it
  /// doubles per failure within the window. Default: 100.
  size_t restart_min_backoff_ms = 100;
  /// --restart-max-backoff-ms: cap of the doubling delay. Default: 10000.
  size_t restart_max_backoff_ms = 10000;
  /// --restart-max: restart intensity, failures allowed per window.
  /// Default: 10.
  size_t restart_max = 10;
  /// --restart-within-s: the intensity window in seconds. Default: 60.
  size_t restart_within_s = 60;

  /// --cluster.node-id, --cluster.members, --cluster.shards,
  /// --cluster.secret, --cluster.retry-ms: this node as a cluster member
  /// (see cluster.hpp); no cluster while the node id is empty.
  cluster_settings cluster;
  /// --cluster.secret-file: a file holding the cluster secret (instead of
  /// --cluster.secret, which `ps` shows); without either, the environment
  /// variable MNEMO_CLUSTER_SECRET.
  std::string cluster_secret_file;
  /// --cluster.members as given: "id@host:port,id@host:port,...".
  std::string cluster_members;
  /// --cluster.etcd: etcd's client endpoints as host:port, comma-separated.
  /// Set: a replicated cluster (docs/replication.md): every shard is kept
  /// on `cluster_replicas` members, led by one of them as etcd decides, and
  /// fails over when its leader is lost. Empty: a static cluster.
  std::string cluster_etcd;
  /// --cluster.replicas: replicas per shard (at most the member count).
  /// Default: 3.
  size_t cluster_replicas = 3;
  /// --cluster.etcd-prefix: the cluster's key prefix in etcd (clusters
  /// sharing an etcd need their own). Default: "/mnemo/cluster".
  std::string cluster_etcd_prefix = "/mnemo/cluster";
  /// --cluster.lease-ttl-s: TTL of the member's etcd lease; a lost leader's
  /// shards fail over after about this long. Default: 2
  /// (docs/replication.md, "Benchmark").
  size_t cluster_lease_ttl_s = 2;
  /// --cluster.rebalance-after-s: a shard led by another member while its
  /// preferred replica has been a candidate this long moves back to it
  /// (preferred-leader election, docs/coordination.md). 0: never. Default:
  /// 10.
  size_t cluster_rebalance_after_s = 10;
  /// Where cluster events (joins, refusals, members going away) are
  /// reported; default: one JSON line each on stdout.
  cluster_log cluster_events;

  node_config();

  /// Returns the journal settings these options describe.
  /// Errors: `errc::invalid_argument` for an unknown durability name.
  caf::expected<persistence::journal_config> journal_settings() const;

  /// Returns the restart policy these options describe (jitter 0.2).
  restart_policy restart_settings() const;

  /// Returns the entity-registry settings these options describe:
  /// passivation timeout, active-entity limit and restart policy.
  registry_options registry_settings() const;
};

}  // namespace mnemo::runtime
