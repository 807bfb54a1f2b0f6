#pragma once

// Nodes of a cluster over CAF's middleman. Each node publishes one
// endpoint actor on its member port and connects to every other member;
// a join handshake checks that both sides share the cluster view (member
// ids and shard count, `cluster_view::fingerprint`; in a replicated
// cluster the shard count and replication settings, since its members
// also come from etcd's member directory) and the cluster secret
// (HMAC-SHA256 proofs in both directions, the secret never crosses the
// wire). Entity registries are wrapped by routers: a command for an entity
// whose shard another member owns travels to that member's endpoint as
// bytes (a `remote_protocol` encodes it), is run against the owner's local
// registry, and the reply comes back the same way. Many requests are in
// flight per connection. Only strings, byte vectors and errors cross the
// wire. While an owner is not connected, its entities' messages fail at
// once with `errc::owner_unavailable`: never queued, never run elsewhere.

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/atom.hpp>
#include <caf/expected.hpp>
#include <caf/fwd.hpp>
#include <caf/message.hpp>

#include "mnemo/runtime/cluster_view.hpp"
#include "mnemo/runtime/stream_shards.hpp"

namespace mnemo::persistence {
class journal;
}  // namespace mnemo::persistence

namespace mnemo::runtime {

/// The journal a node serves to the members that follow it
/// (journal_feed.hpp). Without one, feed requests get `not_found`.
struct journal_source {
  /// This node's journal; must outlive the endpoint.
  persistence::journal* journal = nullptr;
  /// This node's event bus: its head notifications are passed on to the
  /// subscribed members.
  caf::actor event_bus;
};

/// Cluster options of a node (`--cluster.*`, see node_config).
struct cluster_settings {
  /// This node's member id; empty: no cluster.
  std::string node_id;
  /// Every member as "id@host:port", this node included; the same list on
  /// every node.
  std::vector<std::string> members;
  /// Number of shards, fixed for the cluster's life.
  size_t shards = 64;
  /// Shared secret proven at join.
  std::string secret;
  /// TLS with mutual authentication (caf::openssl): this node's
  /// certificate and key (PEM) and the cluster CA that signed every
  /// member's certificate. All three, or none and `plain_tcp`.
  std::string tls_certificate;
  std::string tls_key;
  std::string tls_ca;
  /// Opt-in to plain TCP (no TLS options): connections are neither
  /// encrypted nor authenticated, so whoever reaches the port and reads a
  /// member's node id (sent in clear) can impersonate that member. Garbage
  /// and malformed protocol headers are refused either way. Default: false
  /// (`start` refuses a cluster with neither TLS nor this).
  bool plain_tcp = false;
  /// Largest message between members, bytes (the BASP payload): a larger
  /// header closes its connection before anything is allocated for it, and
  /// a command, reply or journal batch that would not fit fails with
  /// `invalid_argument` on the sending side. The same on every member.
  /// Default 16 MiB; 64 KiB to 1 GiB.
  size_t max_message_bytes = size_t{16} << 20;
  /// How often an unconnected member is tried again, ms.
  size_t retry_ms = 250;
  /// Time for one remote request before it fails with `timeout`, ms.
  size_t request_timeout_ms = 10000;
  /// Interval of CAF's heartbeats to every connected member, ms (default
  /// 500; at least 10).
  size_t heartbeat_ms = 500;
  /// Silence after which a connection to a member is dropped, ms (default
  /// 2000; raised to two heartbeats if smaller). This is how a member
  /// behind a cut link (no FIN, no RST) is noticed: until then, its
  /// requests wait for `request_timeout_ms`.
  size_t connection_timeout_ms = 2000;
  /// Shortest interval between two head notifications this node sends one
  /// follower member, ms (bursts of commits coalesce into one). Default 5.
  size_t feed_interval_ms = 5;
  /// A replicated cluster (the node sets this with `--cluster.etcd`,
  /// docs/replication.md): each routed type's stream prefix is registered
  /// here, so that the journal appends its streams to their shards' logs;
  /// commands go to each shard's current leader (`cluster::set_leader`)
  /// instead of the member list's owner. Null: a static cluster.
  std::shared_ptr<stream_shards> streams;
  /// How the cluster is replicated, e.g. "replicas=3;etcd-prefix=/x" (set
  /// by the node): members compare it at join with the view, so members
  /// that disagree on their shards' replica sets never join.
  std::string replication;
  /// Replicas per shard of a replicated cluster (capped at the member
  /// count; set by the node): which members hold a copy of each shard's
  /// log (cluster_view::replicas_of), whose read models can follow it.
  size_t replicas = 0;

  bool enabled() const noexcept { return !node_id.empty(); }
  bool tls() const noexcept {
    return !tls_certificate.empty() || !tls_key.empty() || !tls_ca.empty();
  }
};

/// Bytes on the wire.
using bytes = std::vector<char>;

/// How the messages of one registry travel to another node.
struct remote_protocol {
  /// Requesting side: encodes a registry message (what `route_atom`
  /// carries), or returns nothing for a message that cannot travel.
  std::function<std::optional<bytes>(const caf::message&)> encode;
  /// Requesting side: turns the owner's reply bytes to the original
  /// message into the reply message.
  std::function<caf::expected<caf::message>(const caf::message& request,
                                            const bytes& reply)>
      decode_reply;
  /// Owning side: decodes `request`, runs it against `local` (the local
  /// registry) through `self` for entity `id`, and calls `done` with the
  /// encoded reply or the error.
  std::function<void(caf::event_based_actor* self, const caf::actor& local,
                     const std::string& id, const bytes& request,
                     std::function<void(caf::expected<bytes>)> done)>
      serve;
  /// The prefix of the streams of this type's entities (stream = prefix +
  /// id), e.g. "account-". A replicated cluster replicates each such stream
  /// with its entity's shard; a type without one has nothing replicated.
  std::string stream_prefix;
};

/// Logs one line (the node prints it as JSON).
using cluster_log =
    std::function<void(const std::string& what, const std::string& detail)>;

/// The cluster membership of a running node.
class cluster {
 public:
  /// Publishes this node's endpoint and starts connecting to the other
  /// members. The actor system must have loaded `caf::io::middleman`.
  /// Errors: `invalid_argument` for bad settings, the middleman's error if
  /// the port cannot be opened. With `source`, the endpoint also serves
  /// this node's journal to members that follow it, and forwards pulls and
  /// head notifications of other members' journals to followers on this
  /// node (journal_feed.hpp).
  static caf::expected<std::unique_ptr<cluster>> start(
      caf::actor_system& sys, const cluster_settings& settings, cluster_log log,
      journal_source source = {});

  ~cluster();
  cluster(const cluster&) = delete;
  cluster& operator=(const cluster&) = delete;

  const cluster_view& view() const noexcept;
  const std::string& self() const noexcept;
  /// The endpoint actor. Stop it with an exit message sent by an actor of
  /// this node (e.g. a `caf::scoped_actor`), before the system: it drops
  /// exit messages of other nodes, and anonymous ones, since anyone who
  /// reaches the cluster port could send those.
  const caf::actor& endpoint() const noexcept { return endpoint_; }
  uint16_t port() const noexcept { return port_; }

  /// Returns a registry for entities of `type` that forwards each
  /// `(route_atom, id, message)` to `local` if this node owns the entity,
  /// else through `protocol` to the owner; and serves requests of other
  /// members for `type` from `local`.
  caf::actor route(const std::string& type, const caf::actor& local,
                   remote_protocol protocol);

  /// Returns the ids of the members this node is connected to and joined
  /// with, in id order.
  std::vector<std::string> connected() const;

  /// Returns the ids of every member this node knows, in id order: the
  /// member list, and in a replicated cluster the members it learned from
  /// etcd's member directory, less those taken out of it.
  std::vector<std::string> members() const;

  /// "tls" or "plain".
  const char* transport() const noexcept;

  // -- replicated cluster (settings.streams set) -----------------------------

  bool replicated() const noexcept;

  /// Member `leader` leads `shard` from now on ("": no member does, its
  /// entities' messages fail with `owner_unavailable`). When this member
  /// comes to lead a shard or stops leading it, the local registries of
  /// every routed type first passivate the shard's entities (`evict_atom`):
  /// a new instance recovers what other leaders wrote meanwhile. Called by
  /// the shard coordinator; thread-safe.
  void set_leader(uint32_t shard, const std::string& leader);

  /// Member `member` listens on `host:port` from now on (e.g. a replacement
  /// machine that announced itself in etcd's member directory): this node
  /// connects there instead of the member list's address when it next
  /// connects to it. In a replicated cluster `member` may be outside the
  /// member list: it becomes a member (joins from it are accepted, and
  /// this node connects to it if its id is the greater). Ignored for this
  /// node, for an invalid id or address, and in a static cluster for ids
  /// outside the view. Thread-safe.
  void set_address(const std::string& member, const std::string& host,
                   uint16_t port);

  /// Replicated cluster: member `member` was taken out of etcd's member
  /// directory (`departed`; false: it came back): this node stops
  /// connecting to it, refuses its joins and leaves it out of `members()`,
  /// also if it is in the member list. Thread-safe.
  void set_departed(const std::string& member, bool departed);

  /// Replicated cluster: `members` hold a copy of `shard`'s log from now
  /// on (its voters and observers in etcd, docs/replica-set-changes.md):
  /// read models of shard logs read it from this member's own copy only
  /// while this member is one of them, and otherwise through one of them,
  /// switching at the endpoint's next tick. Until the first call for a
  /// shard, its replicas are the view's. Thread-safe.
  void set_replicas(uint32_t shard, std::vector<std::string> members);

  /// Replicated cluster: `f` runs each time this member comes to lead a
  /// shard, after the shard's entities were evicted and commands for it
  /// are routed here, e.g. to resume the shard's unfinished sagas. It runs
  /// on the coordinator's thread (it may block briefly, not for long).
  void on_lead(std::function<void(uint32_t shard)> f);

  /// The member that leads `shard` as this node last heard ("" if none);
  /// the member list's owner in a static cluster.
  std::string leader_of(uint32_t shard) const;

  /// This member's replicator (replication/replicator.hpp): the cluster
  /// tells it how to reach every joined member's replicator (a link through
  /// both endpoints, so the cluster's TLS and secret protect replication)
  /// and serves the other members' replication requests with it.
  void attach_replicator(const caf::actor& replicator);

 private:
  cluster() = default;
  caf::actor_system* sys_ = nullptr;
  caf::actor endpoint_;
  uint16_t port_ = 0;
  size_t request_timeout_ms_ = 10000;
  std::shared_ptr<struct cluster_state> state_;
};

/// Returns the hex HMAC-SHA256 of `text` under `key`.
std::string hmac_hex(const std::string& key, const std::string& text);

}  // namespace mnemo::runtime
