#pragma once

// How the messages of an aggregate registry travel between cluster nodes:
// commands (with their idempotency id) and the two state queries.

#include <string>

#include <caf/event_based_actor.hpp>

#include "mnemo/actors/aggregate.hpp"
#include "mnemo/actors/aggregate_registry.hpp"
#include "mnemo/runtime/cluster.hpp"
#include "mnemo/runtime/entity_registry.hpp"
#include "mnemo/runtime/wire.hpp"

namespace mnemo::actors {

/// Returns the cluster protocol of the registry of aggregate type `A`.
template <class A>
runtime::remote_protocol aggregate_protocol() {
  namespace wire = runtime::wire;
  using command = typename A::command;
  using reply = typename A::reply;
  using state = typename A::state;
  enum : uint8_t { do_command = 0, get_state = 1, get_versioned = 2 };
  runtime::remote_protocol p;
  p.stream_prefix = std::string{A::type_name} + "-";  // stream_of<A>
  p.encode = [](const caf::message& msg) -> std::optional<wire::bytes> {
    if (msg.match_elements<command_atom, std::string, command>()) {
      auto id = msg.get_as<std::string>(1);
      auto cmd = msg.get_as<command>(2);
      return wire::pack(do_command, id, cmd);
    }
    if (msg.match_elements<caf::get_atom>()) return wire::pack(get_state);
    if (msg.match_elements<state_atom>()) return wire::pack(get_versioned);
    return std::nullopt;
  };
  p.decode_reply = [](const caf::message& request,
                      const wire::bytes& buf) -> caf::expected<caf::message> {
    if (request.match_elements<command_atom, std::string, command>()) {
      reply r;
      if (auto err = wire::unpack(buf, r)) return err;
      return caf::make_message(std::move(r));
    }
    state s;
    if (request.match_elements<state_atom>()) {
      uint64_t version = 0;
      if (auto err = wire::unpack(buf, s, version)) return err;
      return caf::make_message(std::move(s), version);
    }
    if (auto err = wire::unpack(buf, s)) return err;
    return caf::make_message(std::move(s));
  };
  p.serve = [](caf::event_based_actor* self, const caf::actor& local,
               const std::string& id, const wire::bytes& buf,
               std::function<void(caf::expected<wire::bytes>)> done) {
    auto fail = [done](caf::error& err) { done(std::move(err)); };
    auto timeout = std::chrono::seconds{30};
    switch (wire::kind_of(buf)) {
      case do_command: {
        std::string command_id;
        command cmd;
        if (auto err = wire::unpack(buf, command_id, cmd)) return done(err);
        self->request(local, timeout, runtime::route_atom::value, id,
                      command_message<A>(std::move(cmd), command_id))
            .then([done](reply& r) { done(wire::pack(0, r)); }, fail);
        return;
      }
      case get_state:
        self->request(local, timeout, runtime::route_atom::value, id,
                      caf::make_message(caf::get_atom::value))
            .then([done](state& s) { done(wire::pack(0, s)); }, fail);
        return;
      case get_versioned:
        self->request(local, timeout, runtime::route_atom::value, id,
                      caf::make_message(state_atom::value))
            .then([done](state& s, uint64_t v) { done(wire::pack(0, s, v)); },
                  fail);
        return;
      default:
        done(runtime::make_error(
            runtime::errc::invalid_argument,
            std::string{"unknown request kind for "} + A::type_name));
    }
  };
  return p;
}

}  // namespace mnemo::actors
