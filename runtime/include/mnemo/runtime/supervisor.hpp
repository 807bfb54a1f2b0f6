#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/expected.hpp>
#include <caf/fwd.hpp>

#include "mnemo/runtime/atoms.hpp"
#include "mnemo/runtime/restart_policy.hpp"

namespace mnemo::runtime {

/// When a child is restarted (Erlang/OTP semantics).
enum class restart_type : uint8_t {
  /// Always restarted, also after a normal exit.
  permanent,
  /// Restarted only after an abnormal exit (not `normal`, not
  /// `user_shutdown`).
  transient,
  /// Never restarted.
  temporary,
};

/// Which children a failure restarts.
enum class supervision_strategy : uint8_t {
  /// Only the failed child.
  one_for_one,
  /// All children: the others are stopped (in reverse start order) and all
  /// are started again in spec order.
  all_for_one,
};

/// A supervised child: a unique name and how to start it.
struct child_spec {
  /// Unique among the supervisor's children; used for routing.
  std::string name;
  /// Spawns a new instance. Runs inside the supervisor; must not block. An
  /// invalid handle counts as a failure of the child.
  std::function<caf::actor(caf::actor_system&)> start;
  /// Default: permanent.
  restart_type restart = restart_type::permanent;
};

/// Settings of a supervisor.
struct supervisor_options {
  /// Default: one_for_one.
  supervision_strategy strategy = supervision_strategy::one_for_one;
  /// Backoff and intensity. The intensity counts the restarts of all
  /// children together; the backoff doubles per child.
  restart_policy restarts;
  /// Messages held per child while it waits for its restart; more are
  /// answered with `stash_overflow`. Default: 10000.
  size_t hold_limit = 10000;
  /// Seed of the jitter; 0 picks a random seed. Default: 0.
  uint64_t seed = 0;
};

/// Spawns a supervisor that starts `children` in order and restarts them
/// by `options`. Protocol:
/// - `(route_atom, name, caf::message)`: forwards the message to the
///   current instance of child `name` (the reply goes to the sender). While
///   the child waits for its restart the message is held and forwarded to
///   the new instance. Errors: `not_found` for an unknown name,
///   `entity_stopped` for a child that ended and is not restarted,
///   `stash_overflow` beyond `hold_limit`.
/// - `(child_atom, name)` -> `caf::actor` (invalid while restarting).
/// - `(stats_atom)` -> `(size_t running, size_t restarts)`.
/// More failures than the restart intensity allows make the supervisor stop
/// all children and fail with `restart_limit` (escalation: its own
/// supervisor sees the failure). An exit message stops all children with
/// the same reason, and so does any termination of the supervisor.
/// Errors: `invalid_argument` for an empty or duplicate name or a missing
/// start function.
caf::expected<caf::actor> spawn_supervisor(caf::actor_system& sys,
                                           std::vector<child_spec> children,
                                           supervisor_options options);

}  // namespace mnemo::runtime
