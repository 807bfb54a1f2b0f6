#include "mnemo/runtime/supervisor.hpp"

#include <memory>
#include <set>
#include <unordered_map>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/response_promise.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/system_messages.hpp>

#include "mnemo/runtime/error.hpp"

namespace mnemo::runtime {

namespace {

struct held_message {
  caf::message msg;
  caf::response_promise rp;
};

struct child {
  child_spec spec;
  caf::actor handle;  // invalid while down
  restart_tracker backoff;
  bool finished = false;  // ended and not restarted
  uint64_t timer = 0;     // generation of its armed restart timer
  std::vector<held_message> held;
};

// Handles of the running children, shared with the termination functor so
// that the children stop however the supervisor ends.
using live_children = std::vector<caf::actor>;

struct supervisor_state {
  std::vector<child> children;  // spec order
  supervisor_options options;
  restart_tracker intensity;
  std::mt19937_64 rng;
  std::unordered_map<caf::actor_addr, size_t> index;
  std::shared_ptr<live_children> live;
  size_t restarts = 0;
  uint64_t timers = 0;  // generations of restart timers
  // all_for_one: siblings still terminating, and the delay to apply then.
  bool restarting_all = false;
  uint64_t all_timer = 0;
  std::chrono::milliseconds pending_delay{0};
};

// Timer target that restarts all children (all_for_one).
constexpr uint64_t all_children = UINT64_MAX;

using supervisor_actor = caf::stateful_actor<supervisor_state>;

bool normal_exit(const caf::error& reason) {
  return !reason || reason == caf::exit_reason::normal ||
         reason == caf::exit_reason::user_shutdown;
}

bool restarts_after(const child& c, const caf::error& reason) {
  switch (c.spec.restart) {
    case restart_type::permanent:
      return true;
    case restart_type::transient:
      return !normal_exit(reason);
    case restart_type::temporary:
      return false;
  }
  return false;
}

class supervisor_logic {
 public:
  explicit supervisor_logic(supervisor_actor* self) : self_(self) {}

  void start_all() {
    for (size_t i = 0; i < st().children.size(); ++i)
      if (!st().children[i].finished && (!start(i) || st().restarting_all))
        return;
  }

  caf::result<caf::message> route(const std::string& name, caf::message& msg) {
    auto* c = find(name);
    if (c == nullptr)
      return make_error(errc::not_found,
                        "supervisor has no child '" + name + "'");
    if (c->handle) return self_->delegate(c->handle, std::move(msg));
    if (c->finished)
      return make_error(errc::entity_stopped,
                        "child '" + name + "' has ended and is not restarted");
    if (c->held.size() >= st().options.hold_limit)
      return make_error(errc::stash_overflow,
                        "child '" + name +
                            "' is restarting and already holds " +
                            std::to_string(c->held.size()) + " messages");
    auto rp = self_->make_response_promise();
    c->held.push_back(held_message{std::move(msg), rp});
    return rp;
  }

  caf::result<caf::actor> child_of(const std::string& name) {
    auto* c = find(name);
    if (c == nullptr)
      return make_error(errc::not_found,
                        "supervisor has no child '" + name + "'");
    return c->handle;
  }

  caf::message stats() {
    size_t running = 0;
    for (auto& c : st().children) running += c.handle ? 1 : 0;
    return caf::make_message(running, st().restarts);
  }

  void on_down(const caf::down_msg& dm) {
    auto i = st().index.find(dm.source);
    if (i == st().index.end()) return;
    auto pos = i->second;
    st().index.erase(i);
    auto& c = st().children[pos];
    c.handle = nullptr;
    (*st().live)[pos] = nullptr;
    if (st().restarting_all) {
      if (!any_running()) arm(st().pending_delay);
      return;
    }
    on_child_failed(pos, dm.reason);
  }

  void on_timer(uint64_t target, uint64_t generation) {
    if (target == all_children) {
      if (generation != st().all_timer) return;
      st().restarting_all = false;
      start_all();
      return;
    }
    if (target >= st().children.size()) return;
    auto& c = st().children[target];
    if (generation != c.timer || c.handle || c.finished) return;
    start(target);
  }

 private:
  supervisor_state& st() { return self_->state; }

  child* find(const std::string& name) {
    for (auto& c : st().children)
      if (c.spec.name == name) return &c;
    return nullptr;
  }

  bool any_running() const {
    for (auto& c : self_->state.children)
      if (c.handle) return true;
    return false;
  }

  // Starts child `pos` and hands it the held messages. Returns false when
  // the supervisor escalated.
  bool start(size_t pos) {
    auto& c = st().children[pos];
    auto handle = c.spec.start(self_->system());
    if (!handle)
      return on_child_failed(
          pos, make_error(errc::handler_failed, "start function of child '" +
                                                    c.spec.name +
                                                    "' returned no actor"));
    self_->monitor(handle);
    c.handle = handle;
    (*st().live)[pos] = handle;
    st().index.emplace(handle.address(), pos);
    auto held = std::move(c.held);
    c.held.clear();
    for (auto& h : held) h.rp.delegate(handle, std::move(h.msg));
    return true;
  }

  // Returns false when the supervisor escalated.
  bool on_child_failed(size_t pos, const caf::error& reason) {
    auto& c = st().children[pos];
    if (!restarts_after(c, reason)) {
      c.finished = true;
      fail_held(c, make_error(errc::entity_stopped,
                              "child '" + c.spec.name + "' has ended"));
      return true;
    }
    auto now = self_->clock().now();
    auto& policy = st().options.restarts;
    auto delay = c.backoff.on_failure(now, policy, st().rng);
    if (!st().intensity.record(now, policy) || !delay) {
      escalate(c, reason);
      return false;
    }
    ++st().restarts;
    if (st().options.strategy == supervision_strategy::one_for_one) {
      c.timer = ++st().timers;
      self_->delayed_send(self_, *delay, restart_atom::value, uint64_t{pos},
                          c.timer);
      return true;
    }
    st().restarting_all = true;
    st().pending_delay = *delay;
    if (!any_running()) {
      arm(st().pending_delay);
      return true;
    }
    // Siblings stop in reverse start order; temporary ones stay stopped.
    for (auto i = st().children.rbegin(); i != st().children.rend(); ++i) {
      if (!i->handle) continue;
      if (i->spec.restart == restart_type::temporary) i->finished = true;
      self_->send_exit(i->handle, caf::exit_reason::user_shutdown);
    }
    return true;
  }

  void arm(std::chrono::milliseconds delay) {
    st().all_timer = ++st().timers;
    self_->delayed_send(self_, delay, restart_atom::value, all_children,
                        st().all_timer);
  }

  void fail_held(child& c, const caf::error& err) {
    for (auto& h : c.held) h.rp.deliver(err);
    c.held.clear();
  }

  void escalate(const child& failed, const caf::error& reason) {
    auto& policy = st().options.restarts;
    auto err = make_error(
        errc::restart_limit,
        "supervisor gave up: more than " + std::to_string(policy.max_restarts) +
            " restarts within " + std::to_string(policy.within.count()) +
            " ms; child '" + failed.spec.name +
            "' failed last with: " + describe(reason));
    for (auto& c : st().children) fail_held(c, err);
    self_->quit(err);
  }

  supervisor_actor* self_;
};

caf::behavior supervisor_main(supervisor_actor* self,
                              std::vector<child_spec> specs,
                              supervisor_options options) {
  auto& st = self->state;
  st.options = options;
  st.rng.seed(options.seed != 0 ? options.seed : std::random_device{}());
  for (auto& spec : specs) {
    st.children.emplace_back();
    st.children.back().spec = std::move(spec);
  }
  st.live = std::make_shared<live_children>(st.children.size());
  auto live = st.live;
  self->attach_functor([live](const caf::error& reason) {
    auto why = normal_exit(reason) ? caf::error{caf::exit_reason::user_shutdown}
                                   : reason;
    for (auto i = live->rbegin(); i != live->rend(); ++i)
      if (*i) caf::anon_send(*i, caf::exit_msg{caf::actor_addr{}, why});
  });
  auto logic = std::make_shared<supervisor_logic>(self);
  self->set_down_handler([logic](caf::down_msg& dm) { logic->on_down(dm); });
  self->set_exit_handler(
      [self](caf::exit_msg& msg) { self->quit(msg.reason); });
  logic->start_all();
  return {
      [logic](route_atom, const std::string& name, caf::message& msg) {
        return logic->route(name, msg);
      },
      [logic](child_atom, const std::string& name) {
        return logic->child_of(name);
      },
      [logic](stats_atom) { return logic->stats(); },
      [logic](restart_atom, uint64_t target, uint64_t generation) {
        logic->on_timer(target, generation);
      },
  };
}

}  // namespace

caf::expected<caf::actor> spawn_supervisor(caf::actor_system& sys,
                                           std::vector<child_spec> children,
                                           supervisor_options options) {
  std::set<std::string> names;
  for (auto& c : children) {
    if (c.name.empty() || !c.start)
      return make_error(errc::invalid_argument,
                        "child spec '" + c.name +
                            "' needs a non-empty name and a start function");
    if (!names.insert(c.name).second)
      return make_error(errc::invalid_argument,
                        "duplicate child name '" + c.name + "'");
  }
  return sys.spawn(supervisor_main, std::move(children), options);
}

}  // namespace mnemo::runtime
