#include "mnemo/runtime/entity_registry.hpp"

#include <list>
#include <random>
#include <unordered_map>
#include <vector>

#include <caf/actor_cast.hpp>
#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/response_promise.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/system_messages.hpp>

#include "mnemo/runtime/cluster_view.hpp"
#include "mnemo/runtime/error.hpp"

namespace mnemo::runtime {

namespace {

using clock_type = caf::actor_clock::clock_type;

struct held_message {
  caf::message msg;
  caf::response_promise rp;
};

struct registry_state {
  struct entry {
    caf::actor handle;
    clock_type::time_point last_used;
    std::list<std::string>::iterator lru;
  };

  // An id that may not get a live instance yet: its old instance is still
  // terminating, or it waits for a backoff delay, or it crashed more often
  // than the restart intensity allows (then `failed` is set until `until`).
  struct waiting {
    std::vector<held_message> held;
    bool terminating = false;
    uint64_t timer = 0;  // generation of the backoff timer; 0 = none
    caf::error failed;
    clock_type::time_point until;
  };

  entity_factory factory;
  registry_options options;
  std::unordered_map<std::string, entry> active;
  std::list<std::string> lru;  // most recently used first
  // Live and terminating instances.
  std::unordered_map<caf::actor_addr, std::string> ids;
  std::unordered_map<std::string, waiting> waiting_ids;
  // Ids that crashed within the restart window.
  std::unordered_map<std::string, restart_tracker> crashes;
  std::mt19937_64 rng;
  uint64_t timers = 0;
  size_t passivations = 0;
  size_t restarts = 0;
  // Metrics (null without `options.metrics`).
  metric_gauge* active_gauge = nullptr;
  metric_counter* activations_counter = nullptr;
  metric_counter* passivations_counter = nullptr;
  metric_counter* restarts_counter = nullptr;
  size_t published_active = 0;

  void publish() {
    if (active_gauge == nullptr) return;
    active_gauge->add(static_cast<int64_t>(active.size()) -
                      static_cast<int64_t>(published_active));
    published_active = active.size();
  }
};

using registry_actor = caf::stateful_actor<registry_state>;

bool normal_exit(const caf::error& reason) {
  return !reason || reason == caf::exit_reason::normal ||
         reason == caf::exit_reason::user_shutdown;
}

class registry_logic {
 public:
  explicit registry_logic(registry_actor* self) : self_(self) {}

  caf::result<caf::message> route(const std::string& id, caf::message& msg) {
    auto& st = self_->state;
    if (auto i = st.waiting_ids.find(id); i != st.waiting_ids.end()) {
      auto& w = i->second;
      if (!w.failed) return hold(id, w, msg);
      if (self_->clock().now() < w.until) return w.failed;
      st.waiting_ids.erase(i);
    }
    auto dest = touch_or_activate(id);
    st.publish();
    if (!dest) return no_instance(id);
    return self_->delegate(dest, std::move(msg));
  }

  void on_down(const caf::down_msg& dm) {
    auto& st = self_->state;
    auto i = st.ids.find(dm.source);
    if (i == st.ids.end()) return;
    auto id = std::move(i->second);
    st.ids.erase(i);
    if (auto a = st.active.find(id);
        a != st.active.end() && a->second.handle.address() == dm.source) {
      st.lru.erase(a->second.lru);
      st.active.erase(a);
      st.publish();
    }
    if (!normal_exit(dm.reason)) return on_crash(id, dm.reason);
    auto w = st.waiting_ids.find(id);
    if (w == st.waiting_ids.end()) return;
    auto held = std::move(w->second.held);
    st.waiting_ids.erase(w);
    deliver(id, held);
  }

  void on_timer(const std::string& id, uint64_t generation) {
    auto& st = self_->state;
    auto w = st.waiting_ids.find(id);
    if (w == st.waiting_ids.end() || w->second.timer != generation) return;
    auto held = std::move(w->second.held);
    st.waiting_ids.erase(w);
    // Without held messages the next message activates the entity.
    deliver(id, held);
  }

  void idle_check() {
    auto& st = self_->state;
    auto now = self_->clock().now();
    std::vector<std::string> idle;
    for (auto i = st.lru.rbegin(); i != st.lru.rend(); ++i) {
      auto& e = st.active.at(*i);
      if (now - e.last_used < st.options.idle_timeout)
        break;  // the rest were used more recently
      idle.push_back(*i);
    }
    for (auto& id : idle) passivate(id);
    st.publish();
    forget_old_crashes(now);
    arm_idle_check();
  }

  void arm_idle_check() {
    auto period = std::max(self_->state.options.idle_timeout / 4,
                           std::chrono::milliseconds{1});
    self_->delayed_send(self_, period, idle_check_atom::value);
  }

  size_t evict(const std::string& type, uint32_t shard, uint32_t shards) {
    auto& st = self_->state;
    std::vector<std::string> matching;
    for (auto& [id, e] : st.active)
      if (entity_shard(type, id, shards) == shard) matching.push_back(id);
    for (auto& id : matching) passivate(id);
    st.publish();
    return matching.size();
  }

  caf::message stats() {
    auto& st = self_->state;
    return caf::make_message(st.active.size(), st.passivations, st.restarts);
  }

  void shutdown(const caf::error& reason) {
    auto& st = self_->state;
    for (auto& kvp : st.ids)
      self_->send_exit(caf::actor_cast<caf::actor>(kvp.first), reason);
    auto err = make_error(errc::entity_stopped, "entity registry stopped");
    for (auto& kvp : st.waiting_ids)
      for (auto& h : kvp.second.held) h.rp.deliver(err);
    st.waiting_ids.clear();
    st.active.clear();
    st.lru.clear();
    st.publish();
    self_->quit(reason);
  }

 private:
  caf::result<caf::message> hold(const std::string& id,
                                 registry_state::waiting& w,
                                 caf::message& msg) {
    if (w.held.size() >= self_->state.options.hold_limit)
      return make_error(errc::stash_overflow,
                        "entity '" + id + "' is restarting and already holds " +
                            std::to_string(w.held.size()) + " messages");
    auto rp = self_->make_response_promise();
    w.held.push_back(held_message{std::move(msg), rp});
    return rp;
  }

  static caf::error no_instance(const std::string& id) {
    return make_error(errc::handler_failed,
                      "entity factory returned no actor for '" + id + "'");
  }

  void deliver(const std::string& id, std::vector<held_message>& held) {
    if (held.empty()) return;
    auto dest = touch_or_activate(id);
    for (auto& h : held) {
      if (dest)
        h.rp.delegate(dest, std::move(h.msg));
      else
        h.rp.deliver(no_instance(id));
    }
  }

  void on_crash(const std::string& id, const caf::error& reason) {
    auto& st = self_->state;
    auto now = self_->clock().now();
    auto& tracker = st.crashes[id];
    auto delay = tracker.on_failure(now, st.options.restarts, st.rng);
    auto& w = st.waiting_ids[id];
    w.terminating = false;
    if (!delay) {
      w.until = tracker.window_end(now, st.options.restarts);
      auto wait_ms =
          std::chrono::duration_cast<std::chrono::milliseconds>(w.until - now);
      w.failed = make_error(
          errc::restart_limit,
          "entity '" + id + "' crashed more than " +
              std::to_string(st.options.restarts.max_restarts) +
              " times within " +
              std::to_string(st.options.restarts.within.count()) +
              " ms and stays stopped for " + std::to_string(wait_ms.count()) +
              " ms; last failure: " + describe(reason));
      for (auto& h : w.held) h.rp.deliver(w.failed);
      w.held.clear();
      return;
    }
    ++st.restarts;
    if (st.restarts_counter) st.restarts_counter->inc();
    w.timer = ++st.timers;
    self_->delayed_send(self_, *delay, restart_atom::value, id, w.timer);
  }

  void forget_old_crashes(clock_type::time_point now) {
    auto& st = self_->state;
    for (auto i = st.crashes.begin(); i != st.crashes.end();)
      i = i->second.idle(now, st.options.restarts) ? st.crashes.erase(i)
                                                   : std::next(i);
    for (auto i = st.waiting_ids.begin(); i != st.waiting_ids.end();)
      i = i->second.failed && now >= i->second.until ? st.waiting_ids.erase(i)
                                                     : std::next(i);
  }

  caf::actor touch_or_activate(const std::string& id) {
    auto& st = self_->state;
    auto now = self_->clock().now();
    if (auto i = st.active.find(id); i != st.active.end()) {
      i->second.last_used = now;
      st.lru.splice(st.lru.begin(), st.lru, i->second.lru);
      return i->second.handle;
    }
    auto handle = st.factory(self_->system(), id);
    if (!handle) return handle;
    self_->monitor(handle);
    st.lru.push_front(id);
    st.active.emplace(id, registry_state::entry{handle, now, st.lru.begin()});
    st.ids.emplace(handle.address(), id);
    if (st.activations_counter) st.activations_counter->inc();
    while (st.active.size() > st.options.max_active) passivate(st.lru.back());
    return handle;
  }

  // By value: callers pass references into `lru`, which this erases.
  void passivate(std::string id) {
    auto& st = self_->state;
    auto i = st.active.find(id);
    if (i == st.active.end()) return;
    self_->send(i->second.handle, passivate_atom::value);
    st.lru.erase(i->second.lru);
    st.active.erase(i);
    st.waiting_ids[id].terminating = true;
    ++st.passivations;
    if (st.passivations_counter) st.passivations_counter->inc();
  }

  registry_actor* self_;
};

caf::behavior registry_main(registry_actor* self, entity_factory factory,
                            registry_options options) {
  self->state.factory = std::move(factory);
  self->state.options = options;
  self->state.rng.seed(options.seed != 0 ? options.seed
                                         : std::random_device{}());
  if (auto* m = options.metrics) {
    metric_labels labels{{"type", options.entity_type}};
    auto& st = self->state;
    st.active_gauge = &m->gauge("mnemo_entities_active",
                                "Active (recovered) entities.", labels);
    st.activations_counter = &m->counter("mnemo_entity_activations_total",
                                         "Entities activated.", labels);
    st.passivations_counter =
        &m->counter("mnemo_passivations_total", "Entities passivated.", labels);
    st.restarts_counter =
        &m->counter("mnemo_entity_restarts_total",
                    "Entities restarted after a crash.", labels);
  }
  auto logic = std::make_shared<registry_logic>(self);
  self->set_down_handler([logic](caf::down_msg& dm) { logic->on_down(dm); });
  // Shutting down the registry shuts down its entities: nothing else holds
  // their handles, and the actor system waits for every actor.
  self->set_exit_handler(
      [logic](caf::exit_msg& msg) { logic->shutdown(msg.reason); });
  logic->arm_idle_check();
  return {
      [logic](route_atom, const std::string& id, caf::message& msg) {
        return logic->route(id, msg);
      },
      [logic](restart_atom, const std::string& id, uint64_t generation) {
        logic->on_timer(id, generation);
      },
      [logic](idle_check_atom) { logic->idle_check(); },
      [logic](stats_atom) { return logic->stats(); },
      [logic](evict_atom, const std::string& type, uint32_t shard,
              uint32_t shards) { return logic->evict(type, shard, shards); },
  };
}

}  // namespace

caf::actor spawn_entity_registry(caf::actor_system& sys, entity_factory factory,
                                 registry_options options) {
  return sys.spawn(registry_main, std::move(factory), options);
}

}  // namespace mnemo::runtime
