#include "mnemo/runtime/entity_registry.hpp"

#include <list>
#include <unordered_map>
#include <vector>

#include <caf/actor_cast.hpp>
#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/response_promise.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/system_messages.hpp>

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

  entity_factory factory;
  registry_options options;
  std::unordered_map<std::string, entry> active;
  std::list<std::string> lru;  // most recently used first
  std::unordered_map<caf::actor_addr, std::string> ids;
  // Ids whose old instance is still terminating, with held messages.
  std::unordered_map<std::string, std::vector<held_message>> stopping;
  size_t passivations = 0;
};

using registry_actor = caf::stateful_actor<registry_state>;

class registry_logic {
 public:
  explicit registry_logic(registry_actor* self) : self_(self) {}

  caf::result<caf::message> route(const std::string& id, caf::message& msg) {
    auto& st = self_->state;
    if (auto i = st.stopping.find(id); i != st.stopping.end()) {
      auto rp = self_->make_response_promise();
      i->second.push_back(held_message{std::move(msg), rp});
      return rp;
    }
    auto dest = touch_or_activate(id);
    return self_->delegate(dest, std::move(msg));
  }

  void on_down(const caf::down_msg& dm) {
    auto& st = self_->state;
    auto i = st.ids.find(dm.source);
    if (i == st.ids.end()) return;
    auto id = std::move(i->second);
    st.ids.erase(i);
    // A crashed (not passivated) entity leaves the active set too; the next
    // message recovers a new instance from the journal.
    if (auto a = st.active.find(id);
        a != st.active.end() && a->second.handle.address() == dm.source) {
      st.lru.erase(a->second.lru);
      st.active.erase(a);
    }
    auto s = st.stopping.find(id);
    if (s == st.stopping.end()) return;
    auto held = std::move(s->second);
    st.stopping.erase(s);
    if (held.empty()) return;
    auto dest = touch_or_activate(id);
    for (auto& h : held) h.rp.delegate(dest, std::move(h.msg));
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
    arm_idle_check();
  }

  void arm_idle_check() {
    auto period = std::max(self_->state.options.idle_timeout / 4,
                           std::chrono::milliseconds{1});
    self_->delayed_send(self_, period, idle_check_atom::value);
  }

 private:
  caf::actor touch_or_activate(const std::string& id) {
    auto& st = self_->state;
    auto now = self_->clock().now();
    if (auto i = st.active.find(id); i != st.active.end()) {
      i->second.last_used = now;
      st.lru.splice(st.lru.begin(), st.lru, i->second.lru);
      return i->second.handle;
    }
    auto handle = st.factory(self_->system(), id);
    self_->monitor(handle);
    st.lru.push_front(id);
    st.active.emplace(id, registry_state::entry{handle, now, st.lru.begin()});
    st.ids.emplace(handle.address(), id);
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
    st.stopping.emplace(id, std::vector<held_message>{});
    ++st.passivations;
  }

  registry_actor* self_;
};

caf::behavior registry_main(registry_actor* self, entity_factory factory,
                            registry_options options) {
  self->state.factory = std::move(factory);
  self->state.options = options;
  auto logic = std::make_shared<registry_logic>(self);
  self->set_down_handler([logic](caf::down_msg& dm) { logic->on_down(dm); });
  // Shutting down the registry shuts down its entities: nothing else holds
  // their handles, and the actor system waits for every actor.
  self->set_exit_handler([self](caf::exit_msg& msg) {
    for (auto& kvp : self->state.active)
      self->send_exit(kvp.second.handle, msg.reason);
    for (auto& kvp : self->state.ids)
      self->send_exit(caf::actor_cast<caf::actor>(kvp.first), msg.reason);
    self->quit(msg.reason);
  });
  logic->arm_idle_check();
  return {
      [logic](route_atom, const std::string& id, caf::message& msg) {
        return logic->route(id, msg);
      },
      [logic](idle_check_atom) { logic->idle_check(); },
      [self](stats_atom) {
        return caf::make_message(self->state.active.size(),
                                 self->state.passivations);
      },
  };
}

}  // namespace

caf::actor spawn_entity_registry(caf::actor_system& sys, entity_factory factory,
                                 registry_options options) {
  return sys.spawn(registry_main, std::move(factory), options);
}

}  // namespace mnemo::runtime
