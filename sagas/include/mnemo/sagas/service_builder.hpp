#pragma once

// One builder for a service's actors on a node: its aggregates, sagas and
// projections, each with the node's settings, routed through the cluster
// when the node is in one, and its unfinished sagas resumed. It sits in
// the top module (sagas) because it wires every layer below.
//
//   mnemo::sagas::service_builder b{node};
//   auto accounts = b.aggregate<bank::account>();
//   auto transfers = b.saga<bank::transfer>(bank::transfer::define());
//   b.projection(balances_projection());
//   auto svc = b.build();          // resumes sagas, supervises projections
//   if (!svc) ... runtime::describe(svc.error())
//   svc->projections;              // their supervisor
//
// What `aggregate<A>()` does by hand: `actors::register_types<A>`,
// `actors::spawn_aggregate_registry<A>(node)` and, in a cluster,
// `cluster->route(A::type_name, registry, aggregate_protocol<A>())`; the
// node tracks both. `saga<S>(def)`: the saga events registered, a saga
// context from the node (snapshot policy, stash limit) whose targets are
// the aggregates added before it (by type name), its registry under
// entity type "saga.<type_name>", routed likewise, with the router as the
// address a passivated saga is woken through; `build()` resumes the
// unfinished ones: at once alone or in a static cluster, per shard as this
// member comes to lead it in a replicated one.

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>
#include <caf/spawn_options.hpp>

#include "mnemo/actors/aggregate_registry.hpp"
#include "mnemo/actors/aggregate_traits.hpp"
#include "mnemo/actors/projection.hpp"
#include "mnemo/actors/remote_aggregate.hpp"
#include "mnemo/runtime/cluster.hpp"
#include "mnemo/runtime/console.hpp"
#include "mnemo/runtime/node.hpp"
#include "mnemo/runtime/supervisor.hpp"
#include "mnemo/sagas/remote_saga.hpp"
#include "mnemo/sagas/saga.hpp"
#include "mnemo/sagas/saga_inbox.hpp"
#include "mnemo/sagas/saga_resume.hpp"
#include "mnemo/sagas/saga_trigger.hpp"

namespace mnemo::sagas {

namespace detail {

/// Prints `{"event":"resume_failed","saga","shard","error"}` as a line.
void report_resume_failure(const std::string& type, uint32_t shard,
                           const std::string& error);

}  // namespace detail

/// `(resume_shard_atom, shard)`: resume the sagas of a shard led now.
using resume_shard_atom = caf::atom_constant<caf::atom("mn_resume")>;

/// What `service_builder::build` started.
struct service {
  /// The handle of each aggregate and saga type, by its routed name
  /// (`A::type_name`, "saga.<S::type_name>"): the router in a cluster,
  /// else the node's registry.
  std::map<std::string, caf::actor> handles;
  /// The supervisor of the projections (empty if none were added).
  caf::actor projections;
  /// The projections' names, in the order they were added.
  std::vector<std::string> projection_names;

  /// The handle of aggregate type `A`.
  template <class A>
  const caf::actor& aggregate() const {
    return handles.at(A::type_name);
  }

  /// The handle of saga type `S`.
  template <class S>
  const caf::actor& saga() const {
    return handles.at(std::string{"saga."} + S::type_name);
  }
};

/// How a saga type is wired beyond its registry.
struct saga_wiring {
  /// Sagas started by events and steps decided by events
  /// (saga_trigger.hpp, saga_inbox.hpp): spawns the starter and the inbox
  /// relay of the saga type. Their projections (the trigger and the
  /// router) are the service's to add.
  bool event_driven = false;
  /// Targets beyond the aggregates added before the saga, by type name.
  targets extra_targets;
};

/// Builds a service's actors on node `n` (see the top of this file). Use
/// it from the thread that starts the node; the node must outlive it and
/// the actors it spawns.
class service_builder {
 public:
  explicit service_builder(runtime::node& n) : n_(n) {}

  /// Adds aggregate type `A`; returns the handle its commands go to
  /// (`actors::command_message<A>` with `route_atom`).
  template <class A>
  caf::actor aggregate() {
    actors::register_types<A>(n_.registry());
    auto handle = route(A::type_name, actors::spawn_aggregate_registry<A>(n_),
                        actors::aggregate_protocol<A>());
    built_.handles[A::type_name] = handle;
    targets_[A::type_name] = handle;
    return handle;
  }

  /// Adds saga type `S` with steps `def`; returns the handle starts and
  /// status queries go to. Its targets are the aggregates added before it.
  template <class S>
  caf::actor saga(definition<typename S::data> def, saga_wiring wiring = {}) {
    if (!saga_types_) {
      register_types(n_.registry());
      saga_types_ = true;
    }
    auto type = std::string{"saga."} + S::type_name;
    saga_context ctx;
    ctx.journal = &n_.journal();
    ctx.registry = &n_.registry();
    ctx.completions = &n_.completions();
    ctx.targets = targets_;
    for (auto& [name, target] : wiring.extra_targets)
      ctx.targets[name] = target;
    ctx.wake_via = std::make_shared<saga_wake>();
    ctx.snapshot_every = n_.config().snapshot_every;
    ctx.stash_limit = n_.config().stash_limit;
    auto options = n_.config().registry_settings();
    options.metrics = &n_.metrics();
    options.entity_type = type;
    auto local =
        spawn_saga_registry<S>(n_.system(), ctx, options, std::move(def));
    n_.track(local);
    auto handle = route(type, local, saga_protocol<S>());
    if (n_.cluster()) ctx.wake_via->set(handle);
    built_.handles[type] = handle;
    resumers_.push_back([this, local, type](std::string& error) {
      return resume<S>(local, type, error);
    });
    if (wiring.event_driven) {
      n_.track(spawn_saga_starter<S>(n_.system(), n_.journal(),
                                     n_.completions(), handle, n_.event_bus()));
      n_.track(spawn_saga_inbox<S>(n_.system(), n_.journal(), n_.completions(),
                                   handle, n_.event_bus()));
    }
    return handle;
  }

  /// Adds a projection; `build` spawns every projection under one
  /// supervisor (a failed one restarts with backoff from its offset).
  void projection(actors::projection_spec spec) {
    specs_.push_back(std::move(spec));
  }

  /// Resumes the unfinished sagas and supervises the projections; returns
  /// the handles. Errors: a failed scan of the journal for unfinished
  /// sagas, a projection that does not start.
  caf::expected<service> build() {
    std::string error;
    for (auto& resume : resumers_)
      if (!resume(error))
        return runtime::make_error(runtime::errc::handler_failed, error);
    if (!specs_.empty()) {
      auto ctx = actors::projection_context::of(n_);
      std::vector<runtime::child_spec> children;
      for (auto& spec : specs_) {
        built_.projection_names.push_back(spec.name);
        children.push_back({spec.name, [ctx, spec](caf::actor_system& sys) {
                              auto p = actors::spawn_projection(sys, ctx, spec);
                              return p ? *p : caf::actor{};
                            }});
      }
      runtime::supervisor_options opts;
      opts.restarts = n_.config().restart_settings();
      auto sup =
          runtime::spawn_supervisor(n_.system(), std::move(children), opts);
      if (!sup) return std::move(sup.error());
      n_.track(*sup);
      built_.projections = *sup;
    }
    return built_;
  }

 private:
  caf::actor route(const std::string& type, caf::actor local,
                   runtime::remote_protocol protocol) {
    auto* cluster = n_.cluster();
    if (!cluster) return local;
    auto router = cluster->route(type, std::move(local), std::move(protocol));
    n_.track(router);
    return router;
  }

  // Alone or in a static cluster: every unfinished saga of `S`, now. In a
  // replicated cluster: those of a shard each time this member comes to
  // lead it, on an actor of their own (a failure is printed as a JSON
  // line), since `on_lead` runs on the coordinator's thread.
  template <class S>
  bool resume(const caf::actor& local, const std::string& type,
              std::string& error) {
    auto* cluster = n_.cluster();
    if (!cluster || !cluster->replicated()) {
      auto resumed = resume_unfinished<S>(n_.journal(), n_.registry(), local);
      if (!resumed)
        error = "resuming " + type + ": " + resumed.error().to_string();
      return static_cast<bool>(resumed);
    }
    auto shards = cluster->view().shards();
    auto resumer = n_.system().spawn<caf::detached>(
        [&j = n_.journal(), &types = n_.registry(), local, type, shards,
         cluster](caf::event_based_actor*) -> caf::behavior {
          return {[&j, &types, local, type, shards, cluster](resume_shard_atom,
                                                             uint32_t shard) {
            // Led elsewhere by now: the new leader resumes them.
            if (cluster->leader_of(shard) != cluster->self()) return;
            auto resumed = resume_unfinished<S>(
                j, types, local, [&](const std::string& id) {
                  return runtime::entity_shard(type, id, shards) == shard;
                });
            if (!resumed)
              detail::report_resume_failure(type, shard,
                                            resumed.error().to_string());
          }};
        });
    n_.track(resumer);
    cluster->on_lead([resumer](uint32_t shard) {
      caf::anon_send(resumer, resume_shard_atom::value, shard);
    });
    return true;
  }

  runtime::node& n_;
  service built_;
  targets targets_;
  bool saga_types_ = false;
  std::vector<std::function<bool(std::string&)>> resumers_;
  std::vector<actors::projection_spec> specs_;
};

}  // namespace mnemo::sagas
