#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <caf/error.hpp>
#include <caf/fwd.hpp>

#include "mnemo/persistence/error.hpp"

namespace mnemo::runtime {

/// Error codes of the runtime and actor layers (category atom "mnemo_rt").
/// Values are stable and never renumbered.
enum class errc : uint8_t {
  none = 0,
  /// An entity's bounded command stash is full; retry later.
  stash_overflow = 1,
  /// The entity stopped (recovery or persist failure, handler exception)
  /// before it could answer; the supervisor restarts it.
  entity_stopped = 2,
  /// A command handler threw; the message carries the exception text.
  handler_failed = 3,
  /// A command or configuration value is invalid.
  invalid_argument = 4,
  /// A supervised actor failed more often than its restart intensity
  /// allows: a supervisor escalates (fails itself with this reason); the
  /// entity registry answers with it until the intensity window has passed.
  /// The message names the actor and its last failure.
  restart_limit = 5,
  /// No child or entity of that name exists.
  not_found = 6,
  /// The cluster member that owns the entity is not connected; nothing was
  /// sent. Retry once it is back.
  owner_unavailable = 7,
  /// A cluster member refused to join (other cluster view, wrong secret).
  join_refused = 8,
  /// The member that owns the entity went away while the request was on
  /// its way: it may or may not have been applied. Retry with the same
  /// command id once the member is back.
  owner_lost = 9,
  /// A compare-and-swap lost: what it was based on changed meanwhile (a
  /// shard's replica set in etcd). Read again and decide again.
  conflict = 10,
};

/// Returns the name of `x`, e.g. "stash_overflow".
const char* to_string(errc x) noexcept;

/// Category atom of `errc` errors.
constexpr const char* runtime_category = "mnemo_rt";

/// Category atom of translated `persistence::error`s; the code is the
/// `persistence::errc` value.
constexpr const char* persistence_category = "mnemo_pers";

/// Makes a runtime error whose context holds `message`.
caf::error make_error(errc code, std::string message);

/// Makes a runtime error without context (lets `err == errc::x` work).
caf::error make_error(errc code);

/// Translates a persistence error into a `caf::error` (the one place where
/// this happens). The message travels as the error's context.
caf::error to_caf_error(const persistence::error& err);

/// Returns whether `err` is the persistence error `code`.
bool is(const caf::error& err, persistence::errc code) noexcept;

/// Returns whether `err` is the runtime error `code`.
bool is(const caf::error& err, errc code) noexcept;

/// Returns whether `err` means that the member owning a request went away
/// or cannot be reached: `owner_lost`, `owner_unavailable`, or a CAF error
/// of a dying or missing connection or actor (`sec::request_receiver_down`,
/// `no_route_to_receiving_node`, `socket_disconnected`, ...). CAF reports
/// those for requests in flight before any loss notice of mnemo's own
/// arrives. `request_timeout` is not one: the owner may be alive and slow.
bool means_owner_lost(const caf::error& err) noexcept;

/// Returns `err` unchanged unless `means_owner_lost(err)` holds for a CAF
/// error; then an `owner_lost` error saying that `what` (e.g. "a request to
/// account 'a1'") lost its owner, naming the CAF error. Call it where a
/// request to another member fails.
caf::error as_owner_lost(caf::error err, const std::string& what);

/// Renders any error with its category name, code name and message, e.g.
/// "mnemo_pers:version_conflict: version conflict on stream 'a' ...". For
/// other categories it uses the names given to `register_error_names`
/// ("bank:insufficient_funds: balance 5 is below 10"), else the code
/// ("bank:3: ..."), when the context is one string; otherwise CAF's text.
/// CAF's own errors are named: "system:request_receiver_down".
std::string describe(const caf::error& err);

/// Names the codes of error category `category` for `describe`
/// (process-wide; `names[code]`). Call at start-up, e.g. next to
/// `actor_system_config::add_error_category`.
void register_error_names(caf::atom_value category,
                          std::vector<std::string> names);

/// Registers renderers for both mnemo categories so that
/// `actor_system::render` prints them. Call once per config.
void add_error_categories(caf::actor_system_config& cfg);

}  // namespace mnemo::runtime
