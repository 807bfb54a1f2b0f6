#include "mnemo/runtime/cluster.hpp"

#include <algorithm>
#include <map>
#include <mutex>
#include <set>
#include <tuple>

#include <openssl/hmac.h>
#include <caf/actor_cast.hpp>
#include <caf/actor_system.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/io/middleman.hpp>
#include <caf/io/middleman_actor.hpp>
#include <caf/openssl/manager.hpp>
#include <caf/openssl/publish.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>

#include "cluster_feed.hpp"
#include "cluster_state.hpp"
#include "replication/replication_link.hpp"
#include "mnemo/runtime/entity_registry.hpp"
#include "mnemo/runtime/error.hpp"
#include "mnemo/runtime/event_bus.hpp"
#include "mnemo/runtime/replication/replicator.hpp"

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::shared_ptr<mnemo::runtime::remote_protocol>)

namespace mnemo::runtime {

namespace detail {
// openssl_errors.cpp: keeps one TLS connection's errors from failing others.
bool openssl_errors_isolated() noexcept;
// basp_guard.cpp: refuses oversized BASP headers and forged route selections.
bool basp_guard_active() noexcept;
void limit_basp_payload(uint32_t bytes) noexcept;
uint64_t basp_headers_refused() noexcept;
uint64_t basp_selections_refused() noexcept;
}  // namespace detail

namespace {

using join_atom = caf::atom_constant<caf::atom("mn_join")>;
using remote_atom = caf::atom_constant<caf::atom("mn_remote")>;
using forward_atom = caf::atom_constant<caf::atom("mn_fwd")>;
using serve_atom = caf::atom_constant<caf::atom("mn_serve")>;
using tick_atom = caf::atom_constant<caf::atom("mn_ctick")>;
using peers_atom = caf::atom_constant<caf::atom("mn_peers")>;
// Router -> endpoint: tell me which members go away.
using watch_atom = caf::atom_constant<caf::atom("mn_watch")>;
// Endpoint -> routers: this member went away.
using lost_atom = caf::atom_constant<caf::atom("mn_lost")>;
// Local: `(attach_atom, replicator)`.
using attach_atom = caf::atom_constant<caf::atom("mn_attach")>;
// (address_atom, id, host, port): member `id` listens there now.
using address_atom = caf::atom_constant<caf::atom("mn_addr")>;
// (departed_atom, id, bool): member `id` left the directory (or is back).
using departed_atom = caf::atom_constant<caf::atom("mn_depart")>;

namespace repl = replication;

// What a member proves at join: it knows the secret and shares the view.
std::string join_proof(const std::string& secret, const std::string& from,
                       const std::string& to, const std::string& view) {
  return hmac_hex(secret, "join|" + from + "|" + to + "|" + view);
}

std::string welcome_proof(const std::string& secret, const std::string& from,
                          const std::string& to, const std::string& view) {
  return hmac_hex(secret, "welcome|" + from + "|" + to + "|" + view);
}

struct peer {
  caf::actor handle;  // their endpoint, once we joined them
  bool connecting = false;
  // The fingerprint offered at the next join: 0 the current one, k the
  // k-th older form (the member refused the ones before).
  size_t offer = 0;
};

class endpoint_actor : public caf::event_based_actor {
 public:
  endpoint_actor(caf::actor_config& cfg, std::shared_ptr<cluster_state> st,
                 journal_source source)
      : caf::event_based_actor(cfg),
        st_(st),
        feed_(this, std::move(st), std::move(source)) {}

  const char* name() const override { return "mnemo.cluster"; }

  // The endpoint is published: anyone who reaches the cluster port can
  // send it messages. Exit messages stop an actor (`exit_reason::kill`
  // even past any exit handler), so only this node's actors may send one.
  caf::invoke_message_result consume(caf::mailbox_element& x) override {
    if (x.content().match_elements<caf::exit_msg>() &&
        !(x.sender && x.sender->node() == system().node())) {
      drop_unexpected("an exit message");
      return caf::invoke_message_result::dropped;
    }
    return caf::event_based_actor::consume(x);
  }

  caf::behavior make_behavior() override {
    set_down_handler([this](caf::down_msg& msg) { on_down(msg); });
    set_default_handler(
        [](caf::scheduled_actor* self,
           caf::message_view& x) -> caf::result<caf::message> {
          auto* me = static_cast<endpoint_actor*>(self);
          auto what = "an unexpected message " + to_string(x.content());
          if (what.size() > 200) what = what.substr(0, 200) + "...";
          me->drop_unexpected(what);
          return make_error(errc::invalid_argument,
                            "member '" + me->st_->self + "' dropped " + what);
        });
    send(this, tick_atom::value);
    feed_.start();
    return {
        [this](
            join_atom, const std::string& from, const std::string& fingerprint,
            const std::string& proof) -> caf::result<std::string, std::string> {
          return on_join(from, fingerprint, proof);
        },
        [this](tick_atom) {
          if (!local_sender()) return;
          report_refused();
          connect_all();
          feed_.resubscribe();
          delayed_send(this, st_->retry, tick_atom::value);
        },
        [this](address_atom, const std::string& id, const std::string& host,
               uint16_t port) {
          if (!local_sender() || id == st_->self) return;
          // A static cluster's members are its member list; a replicated
          // cluster's also those in etcd's member directory.
          bool listed = st_->view.find(id) != nullptr;
          if (!listed && !st_->streams) return;
          auto& a = addresses_[id];
          if (a.first == host && a.second == port) return;
          bool known_before = listed || !a.first.empty();
          a = {host, port};
          if (!known_before) {
            std::lock_guard<std::mutex> guard{st_->mtx};
            st_->directory.insert(id);
          }
          st_->log(known_before ? "member_address" : "member_discovered",
                   "member '" + id + "' listens on " + host + ":" +
                       std::to_string(port) +
                       (known_before ? "" : " (etcd's member directory)"));
        },
        [this](departed_atom, const std::string& id, bool departed) {
          if (!local_sender() || id == st_->self || !st_->streams) return;
          bool changed = departed ? departed_.insert(id).second
                                  : departed_.erase(id) > 0;
          if (!changed) return;
          {
            std::lock_guard<std::mutex> guard{st_->mtx};
            if (departed)
              st_->departed.insert(id);
            else
              st_->departed.erase(id);
          }
          st_->log(departed ? "member_departed" : "member_returned",
                   "member '" + id + "' " +
                       (departed ? "was taken out of the member directory: "
                                   "no more connections to it"
                                 : "is back in the member directory"));
        },
        [this](serve_atom, const std::string& type, const caf::actor& local,
               std::shared_ptr<remote_protocol> protocol) {
          if (!local_sender()) return;
          served_[type] = {local, std::move(protocol)};
        },
        [this](forward_atom, const std::string& owner, const std::string& type,
               const std::string& id,
               bytes& payload) -> caf::result<caf::message> {
          if (!local_sender())
            return make_error(errc::invalid_argument,
                              "forwarding is for this node's routers only");
          auto i = peers_.find(owner);
          if (i == peers_.end() || !i->second.handle)
            return make_error(errc::owner_unavailable,
                              "member '" + owner + "', owner of " + type +
                                  " '" + id + "', is not connected");
          return delegate(i->second.handle,
                          caf::make_message(remote_atom::value, st_->self, type,
                                            id, std::move(payload)));
        },
        [this](remote_atom, const std::string& from, const std::string& type,
               const std::string& id, bytes& payload) -> caf::result<bytes> {
          return on_remote(from, type, id, payload);
        },
        [this](watch_atom) {
          // Routers live as long as the node (their handles drop on exit).
          if (!local_sender()) return;
          routers_.push_back(caf::actor_cast<caf::actor>(current_sender()));
        },
        // -- journal feed (cluster_feed.hpp) --
        [this](head_atom, uint64_t head) {
          if (local_sender()) feed_.on_local_head(head);
        },
        [this](feed_tick_atom) {
          if (local_sender()) feed_.on_tick();
        },
        [this](feed_resub_atom) {
          if (local_sender()) feed_.resubscribe();
        },
        [this](feed_follow_atom,
               const std::string& member) -> caf::result<uint64_t, bool> {
          if (!local_sender())
            return make_error(errc::invalid_argument,
                              "following is for this node's actors only");
          return feed_.follow(member,
                              caf::actor_cast<caf::actor>(current_sender()));
        },
        [this](feed_pull_atom, const std::string& member, uint64_t from,
               uint64_t max) -> caf::result<feed_batch_ptr> {
          if (!local_sender())
            return make_error(errc::invalid_argument,
                              "pulling is for this node's actors only");
          return feed_.pull(member, from, max);
        },
        [this](feed_atom, const std::string& from,
               const bytes& payload) -> caf::result<bytes> {
          if (auto err = check_member(from)) return err;
          return feed_.serve(from, payload);
        },
        [this](feed_push_atom, const std::string& from, const bytes& payload) {
          if (!check_member(from)) feed_.on_push(from, payload);
        },
        // -- replication (replication/replication_link.hpp) --
        [this](attach_atom, const caf::actor& replicator) {
          if (!local_sender()) return;
          replicator_ = replicator;
          for (auto& [id, p] : peers_)
            if (p.handle) link_replicator(id, p.handle);
          // Shard commit points, for the read models of shard logs.
          if (replicator_) send(replicator_, repl::repl_watch_atom::value);
        },
        [this](repl::repl_committed_atom, uint32_t shard, uint64_t position) {
          if (local_sender()) feed_.on_commit(shard, position);
        },
        [this](repl::peer_sync_atom, const std::string& from, uint32_t shard,
               uint64_t epoch) {
          return to_replicator(from, repl::repl_sync_atom::value, shard, epoch);
        },
        [this](repl::peer_truncate_atom, const std::string& from,
               uint32_t shard, uint64_t epoch, uint64_t keep) {
          return to_replicator(from, repl::repl_truncate_atom::value, shard,
                               epoch, keep);
        },
        [this](repl::peer_append_atom, const std::string& from,
               bytes& bundle) {
          return to_replicator(from, repl::repl_append_atom::value,
                               std::move(bundle));
        },
        [this](repl::peer_read_atom, const std::string& from, uint32_t shard,
               uint64_t position, uint64_t max_records) {
          return to_replicator(from, repl::repl_read_atom::value, shard,
                               position, max_records);
        },
        [this](peers_atom) {
          std::vector<std::string> result;
          for (auto& [id, p] : peers_)
            if (p.handle) result.push_back(id);
          return result;
        },
    };
  }

 private:
  // Logs a dropped message from another node: the first of each second,
  // with the count of those not logged since.
  void drop_unexpected(const std::string& what) {
    auto now = std::chrono::steady_clock::now();
    if (now - last_drop_log_ < std::chrono::seconds{1}) {
      ++drops_unlogged_;
      return;
    }
    last_drop_log_ = now;
    auto sender = current_sender();
    std::string detail = what + " from " +
                         (sender ? "node " + to_string(sender->node())
                                 : std::string{"an anonymous sender"});
    if (drops_unlogged_ > 0)
      detail += " (and " + std::to_string(drops_unlogged_) +
                " more dropped messages in the second before)";
    drops_unlogged_ = 0;
    st_->log("dropped", detail);
  }

  // Messages only this node's own actors may send.
  bool local_sender() {
    auto sender = current_sender();
    if (sender && sender->node() == system().node()) return true;
    st_->log("dropped", "a local-only message came from another node");
    return false;
  }

  void on_exit() override {
    // Followers and routers hold this actor's handle: break the cycles.
    for (auto& [id, l] : links_) send_exit(l, caf::exit_reason::user_shutdown);
    links_.clear();
    replicator_ = nullptr;
    feed_.clear();
    peers_.clear();
    served_.clear();
    routers_.clear();
  }

  // Checks that the current message comes from member `from`'s joined
  // node; logs and returns `join_refused` otherwise.
  caf::error check_member(const std::string& from) {
    auto sender = current_sender();
    auto i = inbound_.find(from);
    if (!sender || i == inbound_.end() || i->second != sender->node()) {
      st_->log("dropped", "request from '" + from + "' that has not joined");
      return make_error(
          errc::join_refused,
          "member '" + from + "' has not joined '" + st_->self + "'");
    }
    return {};
  }

  // Hands a replication request of member `from` to the replicator, if
  // `from` joined and this member replicates; its reply goes straight back.
  template <class... Ts>
  caf::result<caf::message> to_replicator(const std::string& from,
                                          Ts&&... xs) {
    if (auto err = check_member(from)) return err;
    if (!replicator_)
      return make_error(errc::not_found,
                        "member '" + st_->self + "' replicates nothing");
    return delegate(replicator_, std::forward<Ts>(xs)...);
  }

  // Tells the replicator how to reach member `id`'s (through `h`).
  void link_replicator(const std::string& id, const caf::actor& h) {
    if (!replicator_) return;
    auto& l = links_[id];
    if (l) send_exit(l, caf::exit_reason::user_shutdown);
    l = repl::spawn_replication_link(system(), st_->self, h);
    send(replicator_, repl::repl_peer_atom::value, id, l);
  }

  // -- joining ----------------------------------------------------------------

  // Whether `id` is a member: listed in the view, or (replicated cluster)
  // announced in etcd's member directory.
  bool known(const std::string& id) const {
    if (departed_.count(id) > 0) return false;
    return st_->view.find(id) != nullptr ||
           (st_->streams && addresses_.count(id) > 0);
  }

  // Whether a joiner's fingerprint is one this member accepts.
  bool accepted(const std::string& fingerprint) const {
    auto& older = st_->older_fingerprints;
    return fingerprint == st_->fingerprint ||
           std::find(older.begin(), older.end(), fingerprint) != older.end();
  }

  caf::result<std::string, std::string> on_join(const std::string& from,
                                                const std::string& fingerprint,
                                                const std::string& proof) {
    auto refuse = [&](const std::string& why) {
      // Once per member and reason: a refused member retries all the time.
      // Unknown ids share one slot, so that they cannot grow the map.
      auto& last = refused_[known(from) ? from : std::string{"?"}];
      if (last != why) {
        last = why;
        st_->log("join_refused", "member '" + from + "': " + why);
      }
      return make_error(errc::join_refused,
                        "refused by member '" + st_->self + "': " + why);
    };
    if (from == st_->self || !known(from))
      return refuse("not a member of this cluster (" + st_->fingerprint +
                    (st_->streams ? ", nor in etcd's member directory yet"
                                  : "") +
                    ")");
    if (!accepted(fingerprint))
      return refuse("its cluster view '" + fingerprint + "' differs from '" +
                    st_->fingerprint + "'");
    if (proof != join_proof(st_->secret, from, st_->self, fingerprint))
      return refuse("wrong cluster secret");
    auto sender = current_sender();
    if (!sender) return refuse("anonymous join");
    if (from > st_->self)
      return refuse("members connect to members with greater ids only");
    refused_.erase(from);
    // One connection per pair (CAF's TLS transport does not survive two):
    // the joiner's endpoint is our way back to it.
    adopt(from, caf::actor_cast<caf::actor>(sender), "member_joined",
          "member '" + from + "' joined this node");
    return caf::make_result(
        st_->self, welcome_proof(st_->secret, st_->self, from, fingerprint));
  }

  // What the BASP guard refused since the last tick (process-wide counts:
  // every cluster of the process reports them), one line each.
  void report_refused() {
    auto headers = detail::basp_headers_refused();
    auto selections = detail::basp_selections_refused();
    if (headers > headers_refused_)
      st_->log("dropped",
               std::to_string(headers - headers_refused_) +
                   " cluster connection(s) closed for a malformed or oversized "
                   "protocol header (garbage on the cluster port?)");
    if (selections > selections_refused_)
      st_->log("dropped", std::to_string(selections - selections_refused_) +
                              " forged route selection(s) ignored (a "
                              "connection claimed another node's id)");
    headers_refused_ = headers;
    selections_refused_ = selections;
  }

  void connect_all() {
    auto mm = st_->tls ? system().openssl_manager().actor_handle()
                       : system().middleman().actor_handle();
    // Where each member says it listens (etcd's member directory), else
    // the member list's address; members only in the directory too.
    std::map<std::string, std::pair<std::string, uint16_t>> where;
    for (auto& m : st_->view.members()) where[m.id] = {m.host, m.port};
    for (auto& [id, a] : addresses_) where[id] = a;
    for (auto& [id, a] : where) {
      // The member with the smaller id connects; the other adopts it.
      if (id <= st_->self || departed_.count(id) > 0) continue;
      auto& p = peers_[id];
      if (p.handle || p.connecting) continue;
      p.connecting = true;
      auto& [host, port] = a;
      request(mm, std::chrono::seconds{2}, caf::connect_atom::value, host,
              port)
          .then(
              [this, id](caf::node_id&, caf::strong_actor_ptr& ptr,
                         std::set<std::string>&) {
                auto h = caf::actor_cast<caf::actor>(ptr);
                if (!h) return give_up(id, "no endpoint published");
                join(id, h);
              },
              [this, id](caf::error& err) {
                give_up(id, system().render(err));
              });
    }
  }

  void join(const std::string& id, caf::actor h) {
    // A member that refused the current fingerprint is offered the older
    // forms next (an older build), then the current one again.
    auto offer = peers_[id].offer;
    auto& older = st_->older_fingerprints;
    if (offer > older.size()) offer = 0;
    auto fp = offer == 0 ? st_->fingerprint : older[offer - 1];
    request(h, std::chrono::seconds{5}, join_atom::value, st_->self, fp,
            join_proof(st_->secret, st_->self, id, fp))
        .then(
            [this, id, h, fp](std::string& who, std::string& proof) {
              if (who != id ||
                  proof != welcome_proof(st_->secret, id, st_->self, fp)) {
                st_->log("join_refused",
                         "member '" + id + "' answered without the secret");
                return give_up(id, "bad welcome");
              }
              peers_[id].connecting = false;
              adopt(id, h, "joined", "joined member '" + id + "'");
            },
            [this, id, offer](caf::error& err) {
              auto refused = is(err, errc::join_refused);
              if (refused)
                peers_[id].offer =
                    (offer + 1) % (st_->older_fingerprints.size() + 1);
              if (refused && offer != 0) {
                // Said with the refusal of the current form, not again.
                peers_[id].connecting = false;
                return;
              }
              give_up(id, describe(err), refused);
            });
  }

  // Member `id` is reachable through its endpoint `h` (proxy).
  void adopt(const std::string& id, caf::actor h, const char* what,
             const std::string& detail) {
    auto& p = peers_[id];
    if (p.handle && p.handle != h) demonitor(p.handle);
    p.handle = h;
    inbound_[id] = h->node();
    monitor(h);
    last_failure_[id].clear();
    {
      std::lock_guard<std::mutex> guard{st_->mtx};
      st_->joined.insert(id);
    }
    st_->log(what, detail);
    feed_.member_up(id, h);
    link_replicator(id, h);
  }

  void give_up(const std::string& id, const std::string& why,
               bool refused = false) {
    auto& p = peers_[id];
    p.connecting = false;
    if (why != last_failure_[id]) {
      last_failure_[id] = why;
      st_->log(refused ? "join_refused" : "connect_failed",
               "member '" + id + "': " + why);
    }
  }

  void on_down(const caf::down_msg& msg) {
    for (auto& [id, p] : peers_) {
      if (p.handle && p.handle.address() == msg.source) {
        p.handle = nullptr;
        inbound_.erase(id);
        {
          std::lock_guard<std::mutex> guard{st_->mtx};
          st_->joined.erase(id);
        }
        last_failure_[id].clear();
        st_->log("member_down",
                 "member '" + id + "' is gone: " + system().render(msg.reason));
        // Requests on their way to it will not be answered.
        for (auto& r : routers_) send(r, lost_atom::value, id);
        feed_.member_down(id);
        if (auto l = links_.find(id); l != links_.end()) {
          send_exit(l->second, caf::exit_reason::user_shutdown);
          links_.erase(l);
          send(replicator_, repl::repl_peer_atom::value, id, caf::actor{});
        }
      }
    }
    feed_.follower_down(msg.source);
  }

  // -- serving other members
  // ----------------------------------------------------

  caf::result<bytes> on_remote(const std::string& from, const std::string& type,
                               const std::string& id, const bytes& payload) {
    if (auto err = check_member(from)) return err;
    auto s = served_.find(type);
    // Not (yet) routed here: a member joins the cluster before its services
    // route their types, so a peer may ask in between. Retryable, never a
    // "not found" for an entity that exists.
    if (s == served_.end())
      return make_error(errc::owner_unavailable,
                        "member '" + st_->self + "' serves no type '" + type +
                            "' (yet: it may be starting)");
    if (st_->owner(type, id) != st_->self)
      return make_error(errc::owner_unavailable,
                        "member '" + st_->self + "' does not " +
                            (st_->streams ? "lead the shard of " : "own ") +
                            type + " '" + id + "'");
    auto rp = make_response_promise<bytes>();
    auto& [local, protocol] = s->second;
    protocol->serve(
        this, local, id, payload,
        [rp, st = st_, type, id](caf::expected<bytes> reply) mutable {
          if (!reply)
            rp.deliver(std::move(reply.error()));
          else if (reply->size() > st->max_payload)
            // Sent, it would close the link: the other member's BASP
            // refuses a header announcing more than its limit.
            rp.deliver(make_error(errc::invalid_argument,
                                  "the reply of " + type + " '" + id + "' is " +
                                      std::to_string(reply->size()) +
                                      " bytes encoded, over the " +
                                      std::to_string(st->max_payload) +
                                      " a message between members may carry"));
          else
            rp.deliver(std::move(*reply));
        });
    return rp;
  }

  std::shared_ptr<cluster_state> st_;
  std::map<std::string, peer> peers_;
  // Members taken out of etcd's member directory (cluster::set_departed).
  std::set<std::string> departed_;
  // Addresses members announced (cluster::set_address), by id: members of
  // the view, and in a replicated cluster members outside it too.
  std::map<std::string, std::pair<std::string, uint16_t>> addresses_;
  std::map<std::string, std::string> last_failure_;
  std::map<std::string, caf::node_id> inbound_;
  std::map<std::string, std::string> refused_;
  std::map<std::string, std::pair<caf::actor, std::shared_ptr<remote_protocol>>>
      served_;
  std::vector<caf::actor> routers_;
  // Replicated cluster: this member's replicator and its link to each
  // joined member's.
  caf::actor replicator_;
  std::map<std::string, caf::actor> links_;
  std::chrono::steady_clock::time_point last_drop_log_{};
  uint64_t headers_refused_ = detail::basp_headers_refused();
  uint64_t selections_refused_ = detail::basp_selections_refused();
  uint64_t drops_unlogged_ = 0;
  feed_hub feed_;
};

// The registry of one type as the rest of the node sees it.
caf::behavior router(caf::event_based_actor* self, std::string type,
                     std::shared_ptr<const cluster_state> st, caf::actor local,
                     caf::actor ep, std::shared_ptr<remote_protocol> protocol,
                     std::chrono::milliseconds timeout) {
  self->set_exit_handler(
      [self](caf::exit_msg& msg) { self->quit(msg.reason); });
  // Requests forwarded to other members and not answered yet, by ticket:
  // when their member goes away they fail at once (owner_lost) instead of
  // waiting for their timeout.
  struct in_flight {
    std::string owner;
    caf::response_promise rp;
  };
  auto pending = std::make_shared<std::map<uint64_t, in_flight>>();
  auto tickets = std::make_shared<uint64_t>(0);
  // Answers ticket `t` once: whichever comes first, the reply or the loss.
  auto settle = [pending](uint64_t t) -> std::optional<caf::response_promise> {
    auto i = pending->find(t);
    if (i == pending->end()) return std::nullopt;
    auto rp = std::move(i->second.rp);
    pending->erase(i);
    return rp;
  };
  self->send(ep, watch_atom::value);
  return {
      [=](lost_atom, const std::string& member) {
        for (auto i = pending->begin(); i != pending->end();) {
          if (i->second.owner != member) {
            ++i;
            continue;
          }
          i->second.rp.deliver(make_error(
              errc::owner_lost,
              "member '" + member + "' went away while a request to " + type +
                  " was on its way; it may or may not have been applied"));
          i = pending->erase(i);
        }
      },
      [=](route_atom, const std::string& id,
          caf::message& msg) -> caf::result<caf::message> {
        auto owner = st->owner(type, id);
        if (owner.empty())
          return make_error(errc::owner_unavailable,
                            "no member leads the shard of " + type + " '" + id +
                                "' at the moment (a failover is under way)");
        if (owner == st->self)
          return self->delegate(
              local, caf::make_message(route_atom::value, id, std::move(msg)));
        auto encoded = protocol->encode(msg);
        if (!encoded)
          return make_error(errc::invalid_argument,
                            "this message to " + type + " '" + id +
                                "' cannot travel to member '" + owner + "'");
        if (encoded->size() > st->max_payload)
          return make_error(errc::invalid_argument,
                            "this message to " + type + " '" + id + "' is " +
                                std::to_string(encoded->size()) +
                                " bytes encoded, over the " +
                                std::to_string(st->max_payload) +
                                " a message between members may carry "
                                "(cluster max_message_bytes less 64 KiB)");
        auto rp = self->make_response_promise();
        auto t = ++*tickets;
        pending->emplace(t, in_flight{owner, rp});
        self->request(ep, timeout, forward_atom::value, owner, type, id,
                      std::move(*encoded))
            .then(
                [settle, t, msg, protocol](bytes& reply) {
                  auto rp = settle(t);
                  if (!rp) return;
                  auto decoded = protocol->decode_reply(msg, reply);
                  if (decoded)
                    rp->deliver(std::move(*decoded));
                  else
                    rp->deliver(std::move(decoded.error()));
                },
                [settle, t, type, id, owner](caf::error& err) {
                  auto rp = settle(t);
                  if (!rp) return;
                  rp->deliver(as_owner_lost(std::move(err),
                                            "a request to " + type + " '" + id +
                                                "' on member '" + owner + "'"));
                });
        return rp;
      },
  };
}

}  // namespace

std::string hmac_hex(const std::string& key, const std::string& text) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(text.data()), text.size(), out,
       &len);
  static constexpr char digits[] = "0123456789abcdef";
  std::string result;
  for (unsigned int i = 0; i < len; ++i) {
    result.push_back(digits[out[i] >> 4]);
    result.push_back(digits[out[i] & 0xf]);
  }
  return result;
}

caf::expected<std::unique_ptr<cluster>> cluster::start(
    caf::actor_system& sys, const cluster_settings& settings, cluster_log log,
    journal_source source) {
  std::vector<cluster_member> members;
  std::string why;
  for (auto& text : settings.members) {
    auto m = parse_member(text, why);
    if (!m) return make_error(errc::invalid_argument, why);
    members.push_back(*m);
  }
  auto view =
      cluster_view::make(members, static_cast<uint32_t>(settings.shards), why);
  if (!view) return make_error(errc::invalid_argument, why);
  auto* me = view->find(settings.node_id);
  if (!me)
    return make_error(
        errc::invalid_argument,
        "this node's id '" + settings.node_id + "' is not in the member list");
  if (settings.secret.size() < 16)
    return make_error(errc::invalid_argument,
                      "the cluster secret must have at least 16 characters");
  if (settings.tls() && !detail::openssl_errors_isolated())
    return make_error(errc::invalid_argument, "TLS errors are not isolated");
  if (!settings.tls() && !settings.plain_tcp)
    return make_error(
        errc::invalid_argument,
        "a cluster needs TLS: give --cluster.tls-certificate, "
        "--cluster.tls-key and --cluster.tls-ca, or opt in to plain TCP with "
        "--cluster.plain-tcp (unencrypted, and anyone who reaches the port "
        "can impersonate a member)");
  if (settings.max_message_bytes < (size_t{64} << 10) ||
      settings.max_message_bytes > (size_t{1} << 30))
    return make_error(errc::invalid_argument,
                      "max_message_bytes must be between 64 KiB and 1 GiB, "
                      "not " +
                          std::to_string(settings.max_message_bytes));
  if (!detail::basp_guard_active())
    return make_error(
        errc::invalid_argument,
        "the BASP guard is not in use (a library defines "
        "caf::io::basp::valid first?): a cluster port would be open to "
        "oversized headers and forged route selections");
  detail::limit_basp_payload(static_cast<uint32_t>(settings.max_message_bytes));
  if (settings.streams && settings.streams->shards() != view->shards())
    return make_error(errc::invalid_argument,
                      "the stream-to-shard map has " +
                          std::to_string(settings.streams->shards()) +
                          " shards, the cluster " +
                          std::to_string(view->shards()));
  auto st = std::make_shared<cluster_state>(*view);
  st->self = settings.node_id;
  st->streams = settings.streams;
  if (st->streams)
    st->replicas = std::min(std::max<size_t>(settings.replicas, 1),
                            view->members().size());
  // Members must also agree on how the cluster is replicated. In a
  // replicated cluster etcd decides each shard's replicas, and members
  // join through its member directory: only the shard count and the
  // replication settings are compared, not the member lists.
  auto replication =
      settings.replication.empty() ? std::string{} : ";" + settings.replication;
  auto with_ids = view->fingerprint() + replication;
  // Before 2026-12-07 the fingerprint named every member's address.
  auto with_addresses = "shards=" + std::to_string(view->shards());
  for (auto& m : view->members()) with_addresses += ";" + m.to_string();
  with_addresses += replication;
  if (st->streams) {
    st->fingerprint = "shards=" + std::to_string(view->shards()) + replication;
    // Builds before this form (commit 33ed25e) compared the member ids
    // in a replicated cluster too.
    st->older_fingerprints = {with_ids, with_addresses};
  } else {
    st->fingerprint = with_ids;
    st->older_fingerprints = {with_addresses};
  }
  if (st->streams) st->leaders.resize(view->shards());
  st->tls = settings.tls();
  st->max_payload = settings.max_message_bytes - 65536;
  st->secret = settings.secret;
  st->retry =
      std::chrono::milliseconds{std::max<size_t>(settings.retry_ms, 10)};
  st->log =
      log ? std::move(log) : [](const std::string&, const std::string&) {};
  std::unique_ptr<cluster> result{new cluster};
  result->sys_ = &sys;
  result->request_timeout_ms_ = settings.request_timeout_ms;
  st->request_timeout = std::chrono::milliseconds{settings.request_timeout_ms};
  st->feed_interval =
      std::chrono::milliseconds{std::max<size_t>(settings.feed_interval_ms, 1)};
  auto ep = sys.spawn<endpoint_actor>(st, std::move(source));
  auto port =
      settings.tls()
          ? caf::openssl::publish(ep, me->port, me->host.c_str(), true)
          : sys.middleman().publish(ep, me->port, me->host.c_str(), true);
  if (!port) {
    caf::scoped_actor self{sys};  // the endpoint takes exits from here only
    self->send_exit(ep, caf::exit_reason::user_shutdown);
    return make_error(errc::invalid_argument,
                      "cannot listen on " + me->host + ":" +
                          std::to_string(me->port) + ": " +
                          sys.render(port.error()));
  }
  if (!st->tls)
    st->log("plain_tcp",
            "cluster connections on port " + std::to_string(*port) +
                " are plain TCP (--cluster.plain-tcp): unencrypted and "
                "unauthenticated, so anyone who reaches the port can read "
                "the traffic and impersonate a member; use the "
                "--cluster.tls-* options outside a trusted network");
  result->endpoint_ = ep;
  result->port_ = *port;
  result->state_ = st;
  return result;
}

cluster::~cluster() = default;

caf::actor cluster::route(const std::string& type, const caf::actor& local,
                          remote_protocol protocol) {
  if (state_->streams && !protocol.stream_prefix.empty())
    state_->streams->add(protocol.stream_prefix, type);
  {
    std::lock_guard<std::mutex> guard{state_->leader_mtx};
    state_->locals.emplace_back(type, local);
  }
  auto shared = std::make_shared<remote_protocol>(std::move(protocol));
  // Sent with a local sender: the endpoint takes this only from its node.
  caf::scoped_actor self{*sys_};
  self->send(endpoint_, serve_atom::value, type, local, shared);
  return sys_->spawn(router, type, state_, local, endpoint_, shared,
                     std::chrono::milliseconds{request_timeout_ms_});
}

const cluster_view& cluster::view() const noexcept {
  return state_->view;
}

const std::string& cluster::self() const noexcept {
  return state_->self;
}

std::vector<std::string> cluster::connected() const {
  std::lock_guard<std::mutex> guard{state_->mtx};
  return {state_->joined.begin(), state_->joined.end()};
}

const char* cluster::transport() const noexcept {
  return state_->tls ? "tls" : "plain";
}

bool cluster::replicated() const noexcept {
  return state_->streams != nullptr;
}

std::vector<std::string> cluster::members() const {
  std::set<std::string> ids;
  for (auto& m : state_->view.members()) ids.insert(m.id);
  {
    std::lock_guard<std::mutex> guard{state_->mtx};
    ids.insert(state_->directory.begin(), state_->directory.end());
    for (auto& gone : state_->departed) ids.erase(gone);
  }
  return {ids.begin(), ids.end()};
}

void cluster::set_departed(const std::string& member, bool departed) {
  // From a local actor: the endpoint takes this from its own node only.
  caf::scoped_actor self{*sys_};
  self->send(endpoint_, departed_atom::value, member, departed);
}

void cluster::set_address(const std::string& member, const std::string& host,
                          uint16_t port) {
  std::string why;
  if (!parse_member(member + "@" + host + ":" + std::to_string(port), why)) {
    state_->log("member_address_refused", why);
    return;
  }
  // From a local actor: the endpoint takes this from its own node only.
  caf::scoped_actor self{*sys_};
  self->send(endpoint_, address_atom::value, member, host, port);
}

void cluster::set_replicas(uint32_t shard, std::vector<std::string> members) {
  auto& st = *state_;
  if (!st.streams || shard >= st.view.shards()) return;
  {
    std::lock_guard<std::mutex> guard{st.leader_mtx};
    auto [i, added] = st.live_replicas.emplace(shard, members);
    if (!added) {
      if (i->second == members) return;
      i->second = members;
    }
    ++st.replicas_version;
  }
  std::string list;
  for (auto& m : members) list += (list.empty() ? "" : ",") + m;
  st.log("shard_replicas",
         "shard " + std::to_string(shard) + " is held by [" + list + "]");
}

void cluster::set_leader(uint32_t shard, const std::string& leader) {
  auto& st = *state_;
  if (!st.streams || shard >= st.view.shards()) return;
  std::vector<std::pair<std::string, caf::actor>> locals;
  std::vector<std::function<void(uint32_t)>> on_lead;
  bool was_self = false;
  {
    std::lock_guard<std::mutex> guard{st.leader_mtx};
    auto& current = st.leaders[shard];
    if (current == leader) return;
    was_self = current == st.self;
    locals = st.locals;
    on_lead = st.on_lead;
    // Stopping: route no more commands here before the eviction.
    if (was_self) current = leader;
  }
  bool now_self = leader == st.self;
  if (was_self || now_self)
    for (auto& [type, local] : locals)
      caf::anon_send(local, evict_atom::value, type, shard, st.view.shards());
  // Starting: the evictions are in the registries' mailboxes before the
  // first command routed here can be.
  if (!was_self) {
    std::lock_guard<std::mutex> guard{st.leader_mtx};
    st.leaders[shard] = leader;
  }
  st.log("shard_leader", "shard " + std::to_string(shard) + " is led by " +
                             (leader.empty() ? std::string{"no member"}
                                             : "member '" + leader + "'"));
  if (now_self && !was_self)
    for (auto& f : on_lead) f(shard);
}

void cluster::on_lead(std::function<void(uint32_t shard)> f) {
  std::lock_guard<std::mutex> guard{state_->leader_mtx};
  state_->on_lead.push_back(std::move(f));
}

std::string cluster::leader_of(uint32_t shard) const {
  return state_->leader_of(shard);
}

void cluster::attach_replicator(const caf::actor& replicator) {
  caf::scoped_actor self{*sys_};  // a local sender
  self->send(endpoint_, attach_atom::value, replicator);
}

}  // namespace mnemo::runtime
