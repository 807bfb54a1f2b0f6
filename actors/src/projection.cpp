#include "mnemo/actors/projection.hpp"

#include <algorithm>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>

#include <memory>
#include <utility>

#include "mnemo/runtime/atoms.hpp"
#include "mnemo/runtime/cluster.hpp"
#include "mnemo/runtime/error.hpp"
#include "mnemo/runtime/journal_feed.hpp"
#include "mnemo/runtime/node.hpp"
#include "projection_actor.hpp"

namespace mnemo::actors {

projection_context projection_context::of(runtime::node& node) {
  return projection_context{&node.journal(), &node.completions(),
                            node.event_bus(), &node.metrics(), node.cluster()};
}

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

std::vector<projection_spec> cluster_wide(const projection_spec& spec,
                                          const runtime::cluster* c) {
  std::vector<projection_spec> result;
  auto copy = [&](const std::string& suffix, std::string source) {
    auto s = spec;
    s.name = spec.name + "@" + suffix;
    s.source = std::move(source);
    s.shared_clear = spec.clear;
    s.clear = nullptr;
    result.push_back(std::move(s));
  };
  if (c && c->replicated()) {
    for (uint32_t shard = 0; shard < c->view().shards(); ++shard)
      copy(runtime::shard_source(shard), runtime::shard_source(shard));
    return result;
  }
  copy("local", {});
  if (c)
    for (auto& m : c->view().members())
      if (m.id != c->self()) copy(m.id, m.id);
  return result;
}

namespace {

// Runs `steps` one after another (each a copy's name and a message for it),
// then `done` with the first error or none.
void run_steps(
    caf::event_based_actor* self, const caf::actor& projections,
    std::shared_ptr<std::vector<std::pair<std::string, caf::message>>> steps,
    size_t next, std::chrono::milliseconds timeout,
    std::function<void(caf::error)> done) {
  if (next == steps->size()) return done(caf::error{});
  auto& [name, msg] = (*steps)[next];
  self->request(projections, timeout, runtime::route_atom::value, name, msg)
      .then(
          [=]() {
            run_steps(self, projections, steps, next + 1, timeout, done);
          },
          [done](caf::error& err) { done(std::move(err)); });
}

}  // namespace

void rebuild_together(caf::event_based_actor* self,
                      const caf::actor& projections,
                      std::vector<std::string> copies,
                      std::chrono::milliseconds timeout,
                      std::function<void(caf::error)> done) {
  if (copies.empty())
    return done(runtime::make_error(runtime::errc::invalid_argument,
                                    "a cluster-wide read model has no copies"));
  auto steps =
      std::make_shared<std::vector<std::pair<std::string, caf::message>>>();
  // Paused copies write nothing: the clear and the resets happen while no
  // copy can add to the model.
  for (auto& c : copies)
    steps->emplace_back(c, caf::make_message(pause_atom::value));
  steps->emplace_back(copies.front(),
                      caf::make_message(rebuild_shared_atom::value));
  for (size_t i = 1; i < copies.size(); ++i)
    steps->emplace_back(copies[i],
                        caf::make_message(reset_atom::value, uint64_t{0}));
  for (auto& c : copies)
    steps->emplace_back(c, caf::make_message(resume_atom::value));
  run_steps(self, projections, steps, 0, timeout, std::move(done));
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
  auto handlers = static_cast<int>(static_cast<bool>(spec.apply)) +
                  static_cast<int>(static_cast<bool>(spec.apply_group)) +
                  static_cast<int>(static_cast<bool>(spec.effect));
  if (handlers != 1)
    return runtime::make_error(
        runtime::errc::invalid_argument,
        "projection '" + spec.name +
            "' needs exactly one handler: apply or apply_group "
            "(exactly-once) or effect (at-least-once)");
  if (ctx.journal == nullptr || ctx.completions == nullptr)
    return runtime::make_error(runtime::errc::invalid_argument,
                               "projection context lacks journal or sink");
  if (!spec.source.empty()) {
    auto shard = runtime::parse_shard_source(spec.source);
    if (shard) {
      if (ctx.cluster == nullptr || !ctx.cluster->replicated() ||
          *shard >= ctx.cluster->view().shards())
        return runtime::make_error(
            runtime::errc::invalid_argument,
            "projection '" + spec.name + "' follows '" + spec.source +
                "', which is not a shard of this node's replicated cluster");
    } else if (ctx.cluster == nullptr ||
               !ctx.cluster->view().find(spec.source)) {
      return runtime::make_error(
          runtime::errc::invalid_argument,
          "projection '" + spec.name + "' follows '" + spec.source +
              "', which is not a member of this node's cluster");
    }
    if (spec.source == ctx.cluster->self()) spec.source.clear();
  }
  if (detached)
    return sys.spawn<detail::projection_actor, caf::detached>(std::move(ctx),
                                                              std::move(spec));
  return sys.spawn<detail::projection_actor>(std::move(ctx), std::move(spec));
}

}  // namespace mnemo::actors
