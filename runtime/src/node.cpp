#include "mnemo/runtime/node.hpp"

#include <caf/actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/send.hpp>

#include "mnemo/runtime/error.hpp"

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
  return result;
}

void node::track(const caf::actor& handle) {
  tracked_.push_back(handle);
}

node::~node() {
  for (auto& handle : tracked_)
    caf::anon_send_exit(handle, caf::exit_reason::user_shutdown);
  tracked_.clear();
  // Actors first; then the journal drains its queue, whose completions may
  // still message (now dead) actors while the system exists; then the
  // system.
  system_->await_all_actors_done();
  journal_.reset();
  system_.reset();
}

}  // namespace mnemo::runtime
