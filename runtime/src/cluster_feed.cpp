#include "cluster_feed.hpp"

#include <algorithm>

#include <caf/actor_cast.hpp>
#include <caf/actor_system.hpp>

#include "mnemo/persistence/journal.hpp"
#include "mnemo/persistence/replica_log.hpp"
#include "mnemo/runtime/error.hpp"
#include "mnemo/runtime/event_bus.hpp"

namespace mnemo::runtime {

void feed_hub::start() {
  if (!source_.event_bus || !source_.journal) return;
  head_ = source_.journal->head_position();
  self_->request(source_.event_bus, caf::infinite, subscribe_atom::value)
      .then([this](uint64_t head) { on_local_head(head); },
            [this](caf::error& err) {
              st_->log("feed_failed",
                       "cannot subscribe to the event bus: " + describe(err));
            });
}

// -- serving this node's journal ----------------------------------------------

void feed_hub::on_local_head(uint64_t head) {
  head_ = std::max(head_, head);
  if (!cooling_) flush_heads();
}

void feed_hub::on_tick() {
  cooling_ = false;
  flush_heads();
}

// Tells every subscribed member the newest head, then waits one interval
// before the next round, so that a busy journal costs each member at most
// one notification per interval (the newest head always arrives).
void feed_hub::flush_heads() {
  bool sent = false;
  for (auto& [id, told] : subscribers_) {
    auto p = peers_.find(id);
    if (told >= head_ || p == peers_.end() || !p->second) continue;
    self_->send(p->second, feed_push_atom::value, st_->self,
                feed::encode_head(head_));
    told = head_;
    sent = true;
  }
  for (auto& [shard, members] : shard_subscribers_) {
    auto commit = commit_[shard];
    for (auto& [id, told] : members) {
      auto p = peers_.find(id);
      if (told >= commit || p == peers_.end() || !p->second) continue;
      self_->send(p->second, feed_push_atom::value, st_->self,
                  feed::encode_shard_head(shard, commit));
      told = commit;
      sent = true;
    }
  }
  if (!sent) return;
  cooling_ = true;
  self_->delayed_send(self_, st_->feed_interval, feed_tick_atom::value);
}

caf::result<bytes> feed_hub::serve(const std::string& from,
                                   const bytes& payload) {
  if (!source_.journal)
    return make_error(errc::not_found,
                      "member '" + st_->self + "' serves no journal feed");
  auto req = feed::decode_request(payload);
  if (!req) {
    st_->log("dropped", "malformed feed request from '" + from +
                            "': " + describe(req.error()));
    return std::move(req.error());
  }
  if (req->what == feed::kind::shard_subscribe ||
      req->what == feed::kind::shard_pull)
    return serve_shard(from, *req);
  auto& j = *source_.journal;
  if (req->what == feed::kind::subscribe) {
    feed_batch none;
    none.head = j.head_position();
    subscribers_[from] = none.head;
    return feed::encode_batch(none);
  }
  auto max = std::min<uint64_t>(req->max, max_feed_batch);
  auto events = j.read_all(req->from, static_cast<size_t>(max));
  if (!events) return to_caf_error(events.error());
  feed_batch batch;
  batch.events = std::move(*events);
  // Read after the events, so that it is never below their positions.
  batch.head = j.head_position();
  auto encoded = encode_limited(batch);
  if (!encoded) return std::move(encoded.error());
  return std::move(*encoded);
}

caf::expected<bytes> feed_hub::encode_limited(feed_batch& batch) {
  auto encoded = feed::encode_batch(batch);
  // A batch over the limit would close the link (the follower's BASP
  // refuses the header): send fewer events; the follower pulls on.
  while (encoded.size() > st_->max_payload && batch.events.size() > 1) {
    batch.events.resize(batch.events.size() / 2);
    encoded = feed::encode_batch(batch);
  }
  if (encoded.size() > st_->max_payload)
    return make_error(
        errc::invalid_argument,
        "the event at position " +
            std::to_string(batch.events.front().position) + " of stream '" +
            batch.events.front().stream_id + "' is " +
            std::to_string(encoded.size()) + " bytes encoded, over the " +
            std::to_string(st_->max_payload) +
            " a message between members may carry: raise max_message_bytes on "
            "every member");
  return encoded;
}

// -- following other members --------------------------------------------------

caf::result<uint64_t, bool> feed_hub::follow(const std::string& member,
                                             caf::actor follower) {
  if (auto shard = parse_shard_source(member))
    return follow_shard(*shard, std::move(follower));
  if (member == st_->self || !st_->view.find(member))
    return make_error(errc::invalid_argument,
                      "'" + member + "' is not another member of this cluster");
  if (!follower)
    return make_error(errc::invalid_argument, "anonymous follower");
  if (followers_[member].insert(follower).second) self_->monitor(follower);
  if (peers_.count(member) && !subscribed_.count(member)) subscribe_to(member);
  return caf::make_result(known_head_[member], peers_.count(member) > 0);
}

caf::result<feed_batch_ptr> feed_hub::pull(const std::string& member,
                                           uint64_t from, uint64_t max) {
  if (auto shard = parse_shard_source(member))
    return pull_shard(*shard, from, max);
  auto p = peers_.find(member);
  if (p == peers_.end() || !p->second)
    return make_error(
        errc::owner_unavailable,
        "member '" + member + "' is not connected: its journal cannot be read");
  max = std::min<uint64_t>(max, max_feed_batch);
  return request_batch(p->second, member, feed::encode_pull(from, max), from,
                       max);
}

caf::result<feed_batch_ptr> feed_hub::request_batch(const caf::actor& peer,
                                                    const std::string& member,
                                                    bytes request,
                                                    uint64_t from,
                                                    uint64_t max) {
  auto rp = self_->make_response_promise<feed_batch_ptr>();
  self_
      ->request(peer, st_->request_timeout, feed_atom::value, st_->self,
                std::move(request))
      .then(
          [this, rp, member, from, max](bytes& reply) mutable {
            auto batch = feed::decode_batch(reply, from, max);
            if (!batch) {
              st_->log("dropped", "malformed feed batch from '" + member +
                                      "': " + describe(batch.error()));
              rp.deliver(std::move(batch.error()));
              return;
            }
            rp.deliver(feed_batch_ptr{
                std::make_shared<feed_batch>(std::move(*batch))});
          },
          [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
  return rp;
}

void feed_hub::on_push(const std::string& from, const bytes& payload) {
  auto head = feed::decode_head(payload);
  if (!head) {
    st_->log("dropped", "malformed head notification from '" + from +
                            "': " + describe(head.error()));
    return;
  }
  if (!head->shard) return tell_followers(from, head->head);
  // A shard's commit point, from the member it is followed through.
  if (through(*head->shard, from))
    tell_followers(shard_source(*head->shard), head->head);
}

void feed_hub::subscribe_to(const std::string& id) {
  auto p = peers_.find(id);
  if (p == peers_.end() || !p->second) return;
  subscribed_.insert(id);
  auto peer = p->second;
  self_
      ->request(peer, st_->request_timeout, feed_atom::value, st_->self,
                feed::encode_subscribe())
      .then(
          [this, id](bytes& reply) {
            auto batch = feed::decode_batch(reply, 0, 0);
            if (!batch) {
              subscribed_.erase(id);
              st_->log("dropped", "malformed feed subscription reply from '" +
                                      id + "': " + describe(batch.error()));
              return;
            }
            tell_followers(id, batch->head);
          },
          [this, id](caf::error& err) {
            // Tried again on the next connect tick.
            subscribed_.erase(id);
            st_->log("feed_failed",
                     "cannot follow member '" + id + "': " + describe(err));
          });
}

void feed_hub::tell_followers(const std::string& id, uint64_t head) {
  known_head_[id] = head;
  for (auto& f : followers_[id])
    self_->send(f, feed_head_atom::value, id, head);
}

// -- membership ---------------------------------------------------------------

void feed_hub::member_up(const std::string& id, const caf::actor& peer) {
  peers_[id] = peer;
  subscribed_.erase(id);
  // Not at once: on the accepting side this runs inside the join handler,
  // and the member must see the welcome before our subscription.
  if (!followers_[id].empty()) self_->send(self_, feed_resub_atom::value);
}

void feed_hub::member_down(const std::string& id) {
  peers_.erase(id);
  subscribers_.erase(id);
  subscribed_.erase(id);
  for (auto& f : followers_[id]) self_->send(f, feed_down_atom::value, id);
  for (auto& [shard, members] : shard_subscribers_) members.erase(id);
  // Shards followed through `id`: through another replica if one is
  // connected, else their followers wait.
  std::vector<uint32_t> lost;
  for (auto& [shard, via] : shard_via_)
    if (via == id) lost.push_back(shard);
  for (auto shard : lost) {
    shard_via_.erase(shard);
    subscribe_shard(shard);
    if (shard_via_.count(shard) == 0)
      for (auto& f : followers_[shard_source(shard)])
        self_->send(f, feed_down_atom::value, shard_source(shard));
  }
}

bool feed_hub::follower_down(const caf::actor_addr& addr) {
  bool found = false;
  for (auto& [id, set] : followers_)
    for (auto i = set.begin(); i != set.end();) {
      if (i->address() == addr) {
        i = set.erase(i);
        found = true;
      } else {
        ++i;
      }
    }
  return found;
}

void feed_hub::resubscribe() {
  for (auto& [id, set] : followers_) {
    if (set.empty()) continue;
    if (auto shard = parse_shard_source(id)) {
      if (!holds(*shard) && shard_via_.count(*shard) == 0)
        subscribe_shard(*shard);
    } else if (peers_.count(id) && !subscribed_.count(id)) {
      subscribe_to(id);
    }
  }
}

void feed_hub::clear() {
  peers_.clear();
  followers_.clear();
  subscribers_.clear();
  shard_subscribers_.clear();
  shard_via_.clear();
  source_.event_bus = nullptr;
}

// -- shard logs ---------------------------------------------------------------

bool feed_hub::holds(uint32_t shard) {
  if (!st_->streams || st_->replicas == 0) return false;
  auto version = st_->replicas_version.load();
  if (!holds_ || holds_version_ != version) {
    // The view's replica sets, or etcd's once the coordinator told them
    // (cluster::set_replicas). A shard no longer held here is followed
    // through another member from the next resubscribe (every tick).
    holds_.emplace(st_->view.shards(), false);
    holds_version_ = version;
    for (uint32_t s = 0; s < st_->view.shards(); ++s) {
      auto replicas = st_->replicas_of(s);
      (*holds_)[s] = std::find(replicas.begin(), replicas.end(), st_->self) !=
                     replicas.end();
    }
  }
  return shard < holds_->size() && (*holds_)[shard];
}

caf::error feed_hub::check_shard(uint32_t shard) const {
  if (!st_->streams)
    return make_error(errc::invalid_argument,
                      "'" + shard_source(shard) +
                          "' names a shard's log: this cluster is not "
                          "replicated");
  if (shard >= st_->view.shards())
    return make_error(errc::invalid_argument,
                      "'" + shard_source(shard) + "': the cluster has " +
                          std::to_string(st_->view.shards()) + " shards");
  return {};
}

void feed_hub::on_commit(uint32_t shard, uint64_t position) {
  auto& known = commit_[shard];
  if (position <= known) return;
  known = position;
  // Followers on this node are told at once (a message inside the node);
  // members subscribed here once per interval.
  if (holds(shard)) tell_followers(shard_source(shard), position);
  if (!shard_subscribers_[shard].empty() && !cooling_) flush_heads();
}

caf::result<uint64_t, bool> feed_hub::follow_shard(uint32_t shard,
                                                   caf::actor follower) {
  if (auto err = check_shard(shard)) return err;
  if (!follower)
    return make_error(errc::invalid_argument, "anonymous follower");
  auto name = shard_source(shard);
  if (followers_[name].insert(follower).second) self_->monitor(follower);
  if (holds(shard)) {
    known_head_[name] = commit_[shard];
    return caf::make_result(commit_[shard], true);
  }
  if (shard_via_.count(shard) == 0) subscribe_shard(shard);
  return caf::make_result(known_head_[name], shard_via_.count(shard) > 0);
}

caf::expected<feed_batch> feed_hub::read_shard(uint32_t shard, uint64_t from,
                                               uint64_t max) {
  if (!source_.journal)
    return make_error(errc::not_found,
                      "member '" + st_->self + "' serves no journal feed");
  feed_batch batch;
  // Only what a majority holds: an uncommitted record may still be
  // replaced by a new leader's.
  batch.head = commit_[shard];
  persistence::replica_log log{*source_.journal, shard};
  auto events = log.events(from, batch.head,
                           static_cast<size_t>(std::min(max, max_feed_batch)));
  if (!events) return to_caf_error(events.error());
  batch.events = std::move(*events);
  return batch;
}

caf::result<feed_batch_ptr> feed_hub::pull_shard(uint32_t shard,
                                                 uint64_t from, uint64_t max) {
  if (auto err = check_shard(shard)) return err;
  max = std::min<uint64_t>(max, max_feed_batch);
  if (holds(shard)) {
    auto batch = read_shard(shard, from, max);
    if (!batch) return std::move(batch.error());
    return feed_batch_ptr{std::make_shared<feed_batch>(std::move(*batch))};
  }
  auto i = shard_via_.find(shard);
  auto via = i != shard_via_.end() ? i->second : replica_for(shard);
  auto p = peers_.find(via);
  if (via.empty() || p == peers_.end() || !p->second)
    return make_error(errc::owner_unavailable,
                      "no member with a replica of shard " +
                          std::to_string(shard) + " is connected");
  return request_batch(p->second, via,
                       feed::encode_shard_pull(shard, from, max), from, max);
}

caf::result<bytes> feed_hub::serve_shard(const std::string& from,
                                         const feed::request& req) {
  if (auto err = check_shard(req.shard)) return err;
  if (!holds(req.shard))
    return make_error(errc::not_found, "member '" + st_->self +
                                           "' holds no replica of shard " +
                                           std::to_string(req.shard));
  if (req.what == feed::kind::shard_subscribe) {
    feed_batch none;
    none.head = commit_[req.shard];
    shard_subscribers_[req.shard][from] = none.head;
    return feed::encode_batch(none);
  }
  auto batch = read_shard(req.shard, req.from, req.max);
  if (!batch) return std::move(batch.error());
  auto encoded = encode_limited(*batch);
  if (!encoded) return std::move(encoded.error());
  return std::move(*encoded);
}

std::string feed_hub::replica_for(uint32_t shard) const {
  auto connected = [this](const std::string& id) {
    auto p = peers_.find(id);
    return id != st_->self && p != peers_.end() && p->second;
  };
  auto leader = st_->leader_of(shard);
  if (connected(leader)) return leader;
  for (auto& id : st_->replicas_of(shard))
    if (connected(id)) return id;
  return {};
}

bool feed_hub::through(uint32_t shard, const std::string& member) const {
  auto i = shard_via_.find(shard);
  return i != shard_via_.end() && i->second == member;
}

void feed_hub::subscribe_shard(uint32_t shard) {
  auto via = replica_for(shard);
  if (via.empty()) return;
  shard_via_[shard] = via;
  self_
      ->request(peers_[via], st_->request_timeout, feed_atom::value, st_->self,
                feed::encode_shard_subscribe(shard))
      .then(
          [this, shard, via](bytes& reply) {
            auto batch = feed::decode_batch(reply, 0, 0);
            if (!batch) {
              st_->log("dropped", "malformed shard subscription reply from '" +
                                      via + "': " + describe(batch.error()));
              if (through(shard, via)) shard_via_.erase(shard);
              return;
            }
            if (through(shard, via))
              tell_followers(shard_source(shard), batch->head);
          },
          [this, shard, via](caf::error& err) {
            // Tried again on the next connect tick.
            if (through(shard, via)) shard_via_.erase(shard);
            st_->log("feed_failed", "cannot follow shard " +
                                        std::to_string(shard) + " through '" +
                                        via + "': " + describe(err));
          });
}

}  // namespace mnemo::runtime
