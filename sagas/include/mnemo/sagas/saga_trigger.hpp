#pragma once

// Choreography: sagas started by events, exactly once per triggering event.
//
// A trigger projection (exactly-once) records "start saga <id> with <data>"
// in an outbox table, in the same transaction as its offset. A starter
// actor sends each recorded start to the saga registry and deletes the
// entry once the saga has persisted its start. A crash anywhere leaves the
// entry (sent again: starting an existing saga starts nothing) or the
// offset (event handled again: the same id is recorded again). The saga id
// must be a function of the event, e.g. its stream or event id.

#include <chrono>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <caf/event_based_actor.hpp>

#include "mnemo/actors/projection.hpp"
#include "mnemo/persistence/journal.hpp"
#include "mnemo/persistence/table_store.hpp"
#include "mnemo/runtime/event_bus.hpp"
#include "mnemo/sagas/saga.hpp"

namespace mnemo::sagas {

/// Maps an event to the saga it starts (id and data), or to nothing.
template <class S>
using trigger_fn =
    std::function<std::optional<std::pair<std::string, typename S::data>>(
        const persistence::event_envelope&)>;

/// Returns the outbox table of saga type `S`.
template <class S>
std::string outbox_table() {
  return std::string{"mnemo.saga_outbox."} + S::type_name;
}

/// Returns the exactly-once projection `name` that records the sagas
/// `trigger` derives from the events passing `filter`. Spawn it with
/// `actors::spawn_projection` and supervise it like any projection.
template <class S>
actors::projection_spec saga_trigger(std::string name,
                                     actors::projection_filter filter,
                                     trigger_fn<S> trigger) {
  actors::projection_spec spec;
  spec.name = std::move(name);
  spec.filter = std::move(filter);
  auto table = outbox_table<S>();
  spec.apply = [trigger, table](persistence::write_txn& txn,
                                const persistence::event_envelope& env) {
    auto start = trigger(env);
    if (!start) return persistence::error{};
    return persistence::table_store::put_in(txn, table, start->first,
                                            detail::pack(start->second));
  };
  spec.clear = [table](persistence::write_txn& txn) {
    auto n = persistence::table_store::clear_in(txn, table);
    return n ? persistence::error{} : n.error();
  };
  return spec;
}

namespace detail {

using starter_scan_atom = caf::atom_constant<caf::atom("mn_sscan")>;
using starter_done_atom = caf::atom_constant<caf::atom("mn_sdone")>;

template <class S>
class saga_starter : public caf::event_based_actor {
 public:
  saga_starter(caf::actor_config& cfg, persistence::journal* j,
               runtime::completion_sink* sink, caf::actor registry,
               caf::actor bus, std::chrono::milliseconds poll)
      : caf::event_based_actor(cfg),
        journal_(j),
        sink_(sink),
        registry_(std::move(registry)),
        bus_(std::move(bus)),
        poll_(poll) {}

  const char* name() const override { return "mnemo.saga_starter"; }

  caf::behavior make_behavior() override {
    if (bus_) request(bus_, caf::infinite, runtime::subscribe_atom::value);
    send(this, starter_scan_atom::value, true);
    return {
        [this](runtime::head_atom, uint64_t) { scan(); },
        [this](starter_scan_atom, bool periodic) {
          scan();
          if (periodic)
            delayed_send(this, poll_, starter_scan_atom::value, true);
        },
        [this](starter_done_atom, const std::string& id) {
          in_progress_.erase(id);
        },
    };
  }

 private:
  void scan() {
    std::vector<std::pair<std::string, typename S::data>> found;
    auto table = outbox_table<S>();
    journal_->read([&](persistence::read_txn& txn) {
      auto n = persistence::table_store::scan_in(
          txn, table, "", "", 1000,
          [&](std::string_view k, std::string_view v) {
            typename S::data data{};
            try {
              auto h = msgpack::unpack(v.data(), v.size());
              h.get().convert(data);
            } catch (const std::exception&) {
              return true;  // unreadable: left for an operator
            }
            found.emplace_back(std::string{k}, std::move(data));
            return true;
          });
      return n ? persistence::error{} : n.error();
    });
    for (auto& [id, data] : found)
      if (in_progress_.insert(id).second) start(id, std::move(data));
  }

  void start(const std::string& id, typename S::data data) {
    request(registry_, caf::infinite, runtime::route_atom::value, id,
            caf::make_message(start_atom::value, std::move(data)))
        .then([this, id](saga_status&) { forget(id); },
              [this, id](caf::error&) {
                // Left in the outbox: the next scan tries again.
                in_progress_.erase(id);
              });
  }

  // The saga's start is durable: delete the outbox entry.
  void forget(const std::string& id) {
    auto table = outbox_table<S>();
    auto me = caf::actor_cast<caf::actor>(this);
    auto* sink = sink_;
    sink->expect();
    journal_->write(
        [table, id](persistence::write_txn& txn) {
          auto erased = persistence::table_store::erase_in(txn, table, id);
          return erased ? persistence::error{} : erased.error();
        },
        [sink, me, id](persistence::error) {
          sink->post(
              [me, id] { caf::anon_send(me, starter_done_atom::value, id); });
        });
  }

  persistence::journal* journal_;
  runtime::completion_sink* sink_;
  caf::actor registry_;
  caf::actor bus_;
  std::chrono::milliseconds poll_;
  std::set<std::string> in_progress_;
};

}  // namespace detail

/// Spawns the actor that starts the sagas recorded in the outbox of `S`
/// through `registry`: at start, on every head announced by `bus` (may be
/// invalid) and every `poll`. Pointees must outlive it; stop it with an
/// exit message.
template <class S>
caf::actor spawn_saga_starter(
    caf::actor_system& sys, persistence::journal& j,
    runtime::completion_sink& sink, caf::actor registry, caf::actor bus,
    std::chrono::milliseconds poll = std::chrono::milliseconds{100}) {
  return sys.spawn<detail::saga_starter<S>>(&j, &sink, std::move(registry),
                                            std::move(bus), poll);
}

}  // namespace mnemo::sagas
