#include "mnemo/runtime/node_config.hpp"

#include <thread>

#include <caf/config_option_adder.hpp>

#include "mnemo/runtime/error.hpp"

namespace mnemo::runtime {

node_config::node_config() {
  opt_group{custom_options_, "global"}
      .add(data_dir, "data-dir,d", "data directory of the node")
      .add(durability, "durability", "sync | nometasync | nosync")
      .add(initial_map_mib, "initial-map-mib", "initial LMDB map size (MiB)")
      .add(snapshot_every, "snapshot-every",
           "snapshot an aggregate or a saga every N events (0: never)")
      .add(snapshot_keep, "snapshot-keep", "snapshots kept per aggregate")
      .add(delete_events_on_snapshot, "delete-events-on-snapshot",
           "delete events covered by the oldest kept snapshot")
      .add(stash_limit, "stash-limit",
           "commands buffered per aggregate while it is busy")
      .add(passivation_timeout_s, "passivation-timeout-s",
           "idle seconds before an entity passivates")
      .add(max_active_entities, "max-active-entities",
           "active entities before the least recently used passivates")
      .add(restart_min_backoff_ms, "restart-min-backoff-ms",
           "delay before restarting a crashed actor (doubles per failure)")
      .add(restart_max_backoff_ms, "restart-max-backoff-ms",
           "cap of the restart delay")
      .add(restart_max, "restart-max",
           "restart intensity: failures allowed per window")
      .add(restart_within_s, "restart-within-s",
           "restart intensity window (seconds)");
  opt_group{custom_options_, "cluster"}
      .add(cluster.node_id, "node-id",
           "this node's member id (no cluster if empty)")
      .add(cluster_members, "members",
           "every member as id@host:port, comma-separated, the same list on "
           "every node")
      .add(cluster.shards, "shards",
           "number of shards (fixed for the cluster's life)")
      .add(cluster.secret, "secret",
           "shared secret (16+ characters) proven at join (visible to ps: "
           "prefer secret-file or MNEMO_CLUSTER_SECRET)")
      .add(cluster_secret_file, "secret-file",
           "file holding the cluster secret")
      .add(cluster.tls_certificate, "tls-certificate",
           "this node's certificate (PEM), signed by the cluster CA")
      .add(cluster.tls_key, "tls-key", "this node's private key (PEM)")
      .add(cluster.tls_ca, "tls-ca", "the cluster CA certificate (PEM)")
      .add(cluster.plain_tcp, "plain-tcp",
           "plain TCP instead of TLS (unencrypted, unauthenticated)")
      .add(cluster.max_message_bytes, "max-message-bytes",
           "largest message between members (same on every member)")
      .add(cluster.retry_ms, "retry-ms",
           "retry interval for unconnected members (ms)")
      .add(cluster.request_timeout_ms, "request-timeout-ms",
           "time for one request to another member (ms)")
      .add(cluster.heartbeat_ms, "heartbeat-ms",
           "interval of heartbeats to connected members (ms)")
      .add(cluster.connection_timeout_ms, "connection-timeout-ms",
           "silence after which a member's connection is dropped (ms)")
      .add(cluster.feed_interval_ms, "feed-interval-ms",
           "shortest interval between head notifications to a follower (ms)")
      .add(cluster_etcd, "etcd",
           "etcd endpoints host:port, comma-separated: a replicated cluster")
      .add(cluster_replicas, "replicas",
           "replicas per shard in a replicated cluster")
      .add(cluster_etcd_prefix, "etcd-prefix",
           "the cluster's key prefix in etcd")
      .add(cluster_lease_ttl_s, "lease-ttl-s",
           "TTL of the member's etcd lease (s): failover takes about this long")
      .add(cluster_rebalance_after_s, "rebalance-after-s",
           "move a shard back to its preferred replica once that has been "
           "back this long (s); 0: never");
  // On 2 cores, one worker per core was 30-45 % faster than CAF's default
  // of max(cores, 4) (PLATFORM.md). The command line still overrides it.
  auto cores = std::max(1u, std::thread::hardware_concurrency());
  set("scheduler.max-threads", static_cast<size_t>(cores));
  add_error_categories(*this);
}

caf::expected<persistence::journal_config> node_config::journal_settings()
    const {
  persistence::journal_config cfg;
  cfg.directory = data_dir;
  if (durability == "sync")
    cfg.mode = persistence::durability::sync;
  else if (durability == "nometasync")
    cfg.mode = persistence::durability::nometasync;
  else if (durability == "nosync")
    cfg.mode = persistence::durability::nosync;
  else
    return make_error(errc::invalid_argument,
                      "unknown durability '" + durability +
                          "'; use sync, nometasync or nosync");
  cfg.initial_map_size = uint64_t{initial_map_mib} << 20;
  return cfg;
}

restart_policy node_config::restart_settings() const {
  restart_policy result;
  result.min_backoff = std::chrono::milliseconds{restart_min_backoff_ms};
  result.max_backoff = std::chrono::milliseconds{restart_max_backoff_ms};
  result.max_restarts = restart_max;
  result.within = std::chrono::seconds{restart_within_s};
  return result;
}

registry_options node_config::registry_settings() const {
  registry_options result;
  result.idle_timeout = std::chrono::seconds{passivation_timeout_s};
  result.max_active = max_active_entities;
  result.restarts = restart_settings();
  return result;
}

}  // namespace mnemo::runtime
