#include "mnemo/runtime/node.hpp"

#include <caf/actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/send.hpp>

#include "mnemo/runtime/error.hpp"
#include "mnemo/runtime/event_bus.hpp"

namespace mnemo::runtime {

node::node(node_config& cfg) : cfg_(cfg) {}

caf::expected<std::unique_ptr<node>> node::start(node_config& cfg) {
  auto settings = cfg.journal_settings();
  if (!settings) return settings.error();
  auto j = persistence::journal::open(*settings);
  if (!j) return to_caf_error(j.error());
  std::unique_ptr<node> result{new node(cfg)};
  result->journal_ = std::move(*j);
  result->sink_ = std::make_unique<immediate_completions>();
  result->system_ = std::make_unique<caf::actor_system>(cfg);
  auto bus =
      spawn_event_bus(*result->system_, *result->journal_, *result->sink_);
  result->bus_ = bus.actor;
  result->bus_listener_ = bus.listener;
  result->track(bus.actor);
  return result;
}

void node::track(const caf::actor& handle) {
  tracked_.push_back(handle);
}

node::~node() {
  // From here on no commit reaches the event bus (nor the sink); returns
  // once the listener is not running.
  journal_->unsubscribe(bus_listener_);
  for (auto& handle : tracked_)
    caf::anon_send_exit(handle, caf::exit_reason::user_shutdown);
  tracked_.clear();
  bus_ = nullptr;
  // Actors first; then the journal drains its queue, whose completions may
  // still message (now dead) actors while the system exists; then the
  // system.
  system_->await_all_actors_done();
  journal_.reset();
  system_.reset();
}

}  // namespace mnemo::runtime
