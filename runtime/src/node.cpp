#include "mnemo/runtime/node.hpp"
#include "mnemo/runtime/secrets.hpp"

#include <algorithm>
#include <fstream>
#include <iostream>
#include <mutex>

#include <caf/actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/io/middleman.hpp>
#include <caf/openssl/manager.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>

#include "mnemo/runtime/console.hpp"
#include "mnemo/runtime/coordination/shard_coordinator.hpp"
#include "mnemo/runtime/error.hpp"
#include "mnemo/runtime/event_bus.hpp"
#include "mnemo/runtime/replication/replicator.hpp"

namespace mnemo::runtime {

namespace {

std::string json_escape(const std::string& text) {
  std::string out;
  for (unsigned char c : text) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c < 0x20) {
      static constexpr char hex[] = "0123456789abcdef";
      out += "\\u00";
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 0xf]);
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out;
}

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> result;
  std::string item;
  for (auto c : text + ",") {
    if (c != ',') {
      item.push_back(c);
    } else if (!item.empty()) {
      result.push_back(item);
      item.clear();
    }
  }
  return result;
}

}  // namespace

node::node(node_config& cfg)
    : cfg_(cfg), metrics_(std::make_unique<runtime::metrics>()) {}

void node::add_journal_metrics() {
  auto* j = journal_.get();
  auto& m = *metrics_;
  using stats = persistence::journal_stats;
  auto count = [&](const char* name, const char* help, uint64_t stats::*field) {
    journal_metrics_.push_back(m.counter_fn(name, help, {}, [j, field] {
      return static_cast<double>(j->stats().*field);
    }));
  };
  count("mnemo_journal_commits_total", "Write transactions committed.",
        &stats::commits);
  count("mnemo_journal_failed_commits_total", "Write transactions that failed.",
        &stats::failed_commits);
  count("mnemo_journal_requests_total",
        "Appends, deletions and writes committed.", &stats::requests);
  count("mnemo_journal_events_total", "Events written.", &stats::events);
  count("mnemo_journal_map_grows_total", "Times the LMDB map grew.",
        &stats::map_grows);
  count("mnemo_journal_compactions_total",
        "Times the stream heads or read-model tables were rewritten densely.",
        &stats::compactions);
  count("mnemo_journal_head_folds_total",
        "Times the head log was folded into the stream heads.",
        &stats::head_folds);
  journal_metrics_.push_back(m.histogram_fn(
      "mnemo_journal_commit_events", "Events per group commit.", {}, [j] {
        auto st = j->stats();
        histogram_data h;
        h.bounds = scaled_bounds(stats::batch_bounds, 1);
        h.counts.assign(st.batch_events.begin(), st.batch_events.end());
        h.sum = static_cast<double>(st.events);
        return h;
      }));
  journal_metrics_.push_back(m.histogram_fn(
      "mnemo_journal_commit_seconds",
      "Duration of a group commit (mdb_txn_commit, with its fsync).", {}, [j] {
        auto st = j->stats();
        histogram_data h;
        h.bounds = scaled_bounds(stats::commit_bounds_us, 1e-6);
        h.counts.assign(st.commit_us.begin(), st.commit_us.end());
        h.sum = static_cast<double>(st.commit_us_sum) * 1e-6;
        return h;
      }));
  journal_metrics_.push_back(
      m.gauge_fn("mnemo_journal_head_position",
                 "Global position of the last committed event.", {},
                 [j] { return static_cast<double>(j->head_position()); }));
  journal_metrics_.push_back(
      m.gauge_fn("mnemo_journal_map_bytes", "Size of the LMDB memory map.", {},
                 [j] { return static_cast<double>(j->map_size()); }));
}

caf::expected<std::unique_ptr<node>> node::start(node_config& cfg) {
  auto settings = cfg.journal_settings();
  if (!settings) return settings.error();
  if (cfg.cluster.enabled()) {
    auto secret =
        resolve_secret("--cluster.secret", cfg.cluster.secret,
                       cfg.cluster_secret_file, "MNEMO_CLUSTER_SECRET");
    if (!secret) return secret.error();
    cfg.cluster.secret = std::move(*secret);
  }
  // A replicated cluster: the streams of routed types go to their shards'
  // logs, whose appends the gate admits where this member leads.
  std::shared_ptr<replication::shard_gate> gate;
  cfg.cluster.streams = nullptr;
  cfg.cluster.replication.clear();
  cfg.cluster.replicas = 0;
  if (!cfg.cluster_etcd.empty()) {
    if (!cfg.cluster.enabled())
      return make_error(errc::invalid_argument,
                        "--cluster.etcd needs --cluster.node-id and "
                        "--cluster.members");
    if (cfg.cluster_replicas == 0)
      return make_error(errc::invalid_argument,
                        "--cluster.replicas must be at least 1");
    if (cfg.delete_events_on_snapshot)
      return make_error(errc::invalid_argument,
                        "--delete-events-on-snapshot cannot be used with "
                        "--cluster.etcd: a shard's log is replicated whole");
    if (cfg.cluster_lease_ttl_s == 0 || cfg.cluster_lease_ttl_s > 60)
      return make_error(errc::invalid_argument,
                        "--cluster.lease-ttl-s must be 1 to 60");
    if (cfg.cluster.shards == 0 || cfg.cluster.shards > 65536)
      return make_error(errc::invalid_argument,
                        "--cluster.shards must be 1 to 65536");
    auto streams = std::make_shared<stream_shards>(
        static_cast<uint32_t>(cfg.cluster.shards));
    gate = std::make_shared<replication::shard_gate>();
    settings->shard_of = [streams](std::string_view stream) {
      return streams->shard_of(stream);
    };
    settings->gate = gate;
    // Each shard record travels to the other replicas in one message.
    settings->max_shard_record_bytes =
        cfg.cluster.max_message_bytes > (size_t{256} << 10)
            ? cfg.cluster.max_message_bytes - (size_t{128} << 10)
            : cfg.cluster.max_message_bytes / 2;
    cfg.cluster.streams = std::move(streams);
    cfg.cluster.replicas = cfg.cluster_replicas;
    cfg.cluster.replication =
        "replicas=" + std::to_string(cfg.cluster_replicas) +
        ";etcd-prefix=" + cfg.cluster_etcd_prefix;
  }
  auto j = persistence::journal::open(*settings);
  if (!j) return to_caf_error(j.error());
  std::unique_ptr<node> result{new node(cfg)};
  result->journal_ = std::move(*j);
  result->add_journal_metrics();
  result->sink_ = std::make_unique<immediate_completions>();
  if (cfg.cluster.enabled()) {
    cfg.cluster.members = split_list(cfg.cluster_members);
    cfg.load<caf::io::middleman>();
    if (cfg.cluster.tls()) {
      auto& c = cfg.cluster;
      if (c.tls_certificate.empty() || c.tls_key.empty() || c.tls_ca.empty())
        return make_error(errc::invalid_argument,
                          "TLS needs --cluster.tls-certificate, "
                          "--cluster.tls-key and --cluster.tls-ca together");
      for (auto* path : {&c.tls_certificate, &c.tls_key, &c.tls_ca})
        if (!std::ifstream{*path})
          return make_error(errc::invalid_argument,
                            "cannot read TLS file '" + *path + "'");
      cfg.openssl_certificate = c.tls_certificate;
      cfg.openssl_key = c.tls_key;
      cfg.openssl_cafile = c.tls_ca;
      cfg.load<caf::openssl::manager>();
    }
    // CAF notices a closed connection at once, but a silent peer (a cut
    // link: no FIN, no RST) only through the connection timeout, which is
    // off by default (0) and only checked on heartbeat ticks.
    auto beat = std::max<size_t>(cfg.cluster.heartbeat_ms, 10);
    auto silence = std::max(cfg.cluster.connection_timeout_ms, 2 * beat);
    cfg.set("middleman.heartbeat-interval",
            caf::timespan{std::chrono::milliseconds{beat}});
    cfg.set("middleman.connection-timeout",
            caf::timespan{std::chrono::milliseconds{silence}});
    cfg.set("middleman.enable-automatic-connections", false);
  }
  result->system_ = std::make_unique<caf::actor_system>(cfg);
  auto bus =
      spawn_event_bus(*result->system_, *result->journal_, *result->sink_);
  result->bus_ = bus.actor;
  result->bus_listener_ = bus.listener;
  result->track(bus.actor);
  if (cfg.cluster.enabled()) {
    auto log = cfg.cluster_events;
    if (!log)
      log = [id = cfg.cluster.node_id](const std::string& what,
                                       const std::string& detail) {
        print_line("{\"event\":\"cluster\",\"node\":\"" + id +
                   "\",\"what\":\"" + what + "\",\"detail\":\"" +
                   json_escape(detail) + "\"}");
      };
    result->cluster_log_ = log;
    // Members that follow this node's journal are told its new heads.
    auto c =
        cluster::start(*result->system_, cfg.cluster, std::move(log),
                       journal_source{result->journal_.get(), result->bus_});
    if (!c) return c.error();
    result->cluster_ = std::move(*c);
    result->track(result->cluster_->endpoint());
    if (gate) {
      replication::replicator_settings rs;
      rs.member = cfg.cluster.node_id;
      // No shard votes before the coordinator checked the member's
      // identity in etcd (start_replication).
      rs.await_identity = true;
      result->replicator_ = replication::spawn_replicator(
          *result->system_, *result->journal_, gate, rs);
      result->track(result->replicator_);
      result->cluster_->attach_replicator(result->replicator_);
    }
  }
  return result;
}

caf::error node::start_replication() {
  if (!replicator_ || coordinator_) return {};
  coordination::coordinator_settings cs;
  cs.prefix = cfg_.cluster_etcd_prefix;
  cs.member = cfg_.cluster.node_id;
  auto& view = cluster_->view();
  auto count = std::min(cfg_.cluster_replicas, view.members().size());
  std::vector<std::vector<std::string>> sets;
  for (uint32_t shard = 0; shard < view.shards(); ++shard) {
    auto replicas = view.replicas_of(shard, count);
    sets.push_back(replicas);
    if (std::find(replicas.begin(), replicas.end(), cs.member) !=
        replicas.end())
      cs.replicas[shard] = std::move(replicas);
  }
  // Every member must count majorities over the same replicas: the map
  // in etcd is the one they all compare theirs with.
  cs.shard_map = coordination::shard_map_json(view.shards(), count, sets,
                                              cfg_.cluster_replicas);
  cs.lease_ttl = std::chrono::seconds{cfg_.cluster_lease_ttl_s};
  cs.rebalance_after = std::chrono::seconds{cfg_.cluster_rebalance_after_s};
  cs.replica_id = persistence::replica_log::replica_id(*journal_);
  // Copies of shards this member no longer holds are dropped.
  cs.journal = journal_.get();
  cs.etcd.endpoints = split_list(cfg_.cluster_etcd);
  cs.on_leader = [c = cluster_.get()](uint32_t shard,
                                      const std::string& member) {
    c->set_leader(shard, member);
  };
  // Which members hold each shard's log, as etcd says: where read models
  // of shard logs read it (a member may join or leave a replica set).
  cs.on_replicas = [c = cluster_.get()](
                       uint32_t shard,
                       const std::vector<std::string>& members) {
    c->set_replicas(shard, members);
  };
  // The member directory: where this member listens, and where the others
  // say they do (a member replaced by a machine on another address).
  if (auto* me = view.find(cs.member))
    cs.address = me->host + ":" + std::to_string(me->port);
  cs.on_address = [c = cluster_.get(), log = cluster_log_](
                      const std::string& member, const std::string& address) {
    std::string why;
    auto parsed = parse_member(member + "@" + address, why);
    if (!parsed) {
      log("member_address_refused",
          "member '" + member + "' announced '" + address + "': " + why);
      return;
    }
    c->set_address(member, parsed->host, parsed->port);
  };
  cs.on_departed = [c = cluster_.get()](const std::string& member,
                                        bool departed) {
    c->set_departed(member, departed);
  };
  auto c = coordination::shard_coordinator::start(*system_, replicator_,
                                                  std::move(cs), cluster_log_);
  if (!c) return std::move(c.error());
  coordinator_ = std::move(*c);
  return {};
}

void node::track(const caf::actor& handle) {
  tracked_.push_back(handle);
}

node::~node() {
  // Leave the elections first: the shards this member leads fail over at
  // once instead of after the lease's TTL.
  coordinator_.reset();
  // From here on no commit reaches the event bus (nor the sink); returns
  // once the listener is not running.
  journal_->unsubscribe(bus_listener_);
  {
    // A local sender: the cluster endpoint takes exits from this node only.
    caf::scoped_actor self{*system_};
    for (auto& handle : tracked_)
      self->send_exit(handle, caf::exit_reason::user_shutdown);
  }
  tracked_.clear();
  bus_ = nullptr;
  // Actors first; then the journal drains its queue, whose completions may
  // still message (now dead) actors while the system exists; then the
  // system.
  system_->await_all_actors_done();
  for (auto token : journal_metrics_) metrics_->remove(token);
  journal_.reset();
  system_.reset();
}

}  // namespace mnemo::runtime
