#include "mnemo/actors/projection.hpp"

#include <algorithm>

#include <caf/actor_system.hpp>

#include "mnemo/runtime/error.hpp"
#include "projection_actor.hpp"

namespace mnemo::actors {

bool projection_filter::matches(const persistence::event_envelope& env) const {
  if (!event_types.empty() && std::find(event_types.begin(), event_types.end(),
                                        env.type) == event_types.end())
    return false;
  if (!tags.empty() &&
      std::none_of(tags.begin(), tags.end(), [&](const std::string& t) {
        return std::find(env.tags.begin(), env.tags.end(), t) != env.tags.end();
      }))
    return false;
  return env.stream_id.compare(0, stream_prefix.size(), stream_prefix) == 0;
}

caf::expected<caf::actor> spawn_projection(caf::actor_system& sys,
                                           projection_context ctx,
                                           projection_spec spec,
                                           bool detached) {
  if (spec.name.empty() || spec.name.size() > 200 ||
      spec.name.find('\0') != std::string::npos)
    return runtime::make_error(
        runtime::errc::invalid_argument,
        "projection name must have 1..200 bytes and no NUL byte");
  if (static_cast<bool>(spec.apply) == static_cast<bool>(spec.effect))
    return runtime::make_error(
        runtime::errc::invalid_argument,
        "projection '" + spec.name +
            "' needs exactly one handler: apply (exactly-once) or effect "
            "(at-least-once)");
  if (ctx.journal == nullptr || ctx.completions == nullptr)
    return runtime::make_error(runtime::errc::invalid_argument,
                               "projection context lacks journal or sink");
  if (detached)
    return sys.spawn<detail::projection_actor, caf::detached>(std::move(ctx),
                                                              std::move(spec));
  return sys.spawn<detail::projection_actor>(std::move(ctx), std::move(spec));
}

}  // namespace mnemo::actors
