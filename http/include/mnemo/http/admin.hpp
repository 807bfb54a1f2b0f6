#pragma once

// The projection admin endpoints of the example nodes (status, pause,
// resume, rebuild, dead letters), answered by asking the projection
// supervisor from inside an actor.

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include "mnemo/http/admin_api.hpp"
#include "mnemo/http/server.hpp"

namespace mnemo::http {

/// Runs admin operation `op` from `self` against the projections
/// supervised by `projections` (whose children are `names`) and calls
/// `done` with the answer;
void run_admin(caf::event_based_actor* self, const caf::actor& projections,
               const std::vector<std::string>& names,
               std::chrono::milliseconds timeout,
               const mnemo::http::admin_api::operation& op,
               std::function<void(mnemo::http::response)> done);

}  // namespace mnemo::http
