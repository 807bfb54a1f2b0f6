#pragma once

// How the messages of a saga registry travel between cluster nodes: start,
// status and inbox deliveries (of the node's journal, or carrying the event
// from another log).

#include <string>

#include <caf/event_based_actor.hpp>

#include "mnemo/runtime/cluster.hpp"
#include "mnemo/runtime/wire.hpp"
#include "mnemo/sagas/saga.hpp"

namespace mnemo::sagas {

/// Returns the cluster protocol of the registry of saga type `S`.
template <class S>
runtime::remote_protocol saga_protocol() {
  namespace wire = runtime::wire;
  using data = typename S::data;
  enum : uint8_t {
    do_start = 0,
    get_status = 1,
    do_deliver = 2,
    do_deliver_event = 3
  };
  runtime::remote_protocol p;
  p.stream_prefix = std::string{"saga-"} + S::type_name + "-";  // saga_stream
  p.encode = [](const caf::message& msg) -> std::optional<wire::bytes> {
    if (msg.match_elements<start_atom, data>()) {
      auto d = msg.get_as<data>(1);
      return wire::pack(do_start, d);
    }
    if (msg.match_elements<status_atom>()) return wire::pack(get_status);
    if (msg.match_elements<deliver_atom, uint64_t>()) {
      auto position = msg.get_as<uint64_t>(1);
      return wire::pack(do_deliver, position);
    }
    if (msg.match_elements<deliver_atom, std::string, uint64_t,
                           std::string>()) {
      auto source = msg.get_as<std::string>(1);
      auto position = msg.get_as<uint64_t>(2);
      auto event = msg.get_as<std::string>(3);
      return wire::pack(do_deliver_event, source, position, event);
    }
    return std::nullopt;
  };
  p.decode_reply = [](const caf::message& request,
                      const wire::bytes& buf) -> caf::expected<caf::message> {
    if (request.match_elements<deliver_atom, uint64_t>() ||
        request.match_elements<deliver_atom, std::string, uint64_t,
                               std::string>()) {
      bool decided = false;
      if (auto err = wire::unpack(buf, decided)) return err;
      return caf::make_message(decided);
    }
    saga_status st;
    if (auto err = wire::unpack(buf, st)) return err;
    return caf::make_message(std::move(st));
  };
  p.serve = [](caf::event_based_actor* self, const caf::actor& local,
               const std::string& id, const wire::bytes& buf,
               std::function<void(caf::expected<wire::bytes>)> done) {
    auto fail = [done](caf::error& err) { done(std::move(err)); };
    auto timeout = std::chrono::seconds{30};
    auto status = [done](saga_status& st) { done(wire::pack(0, st)); };
    switch (wire::kind_of(buf)) {
      case do_start: {
        data d;
        if (auto err = wire::unpack(buf, d)) return done(err);
        self->request(local, timeout, runtime::route_atom::value, id,
                      caf::make_message(start_atom::value, std::move(d)))
            .then(status, fail);
        return;
      }
      case get_status:
        self->request(local, timeout, runtime::route_atom::value, id,
                      caf::make_message(status_atom::value))
            .then(status, fail);
        return;
      case do_deliver: {
        uint64_t position = 0;
        if (auto err = wire::unpack(buf, position)) return done(err);
        self->request(local, timeout, runtime::route_atom::value, id,
                      caf::make_message(deliver_atom::value, position))
            .then([done](bool decided) { done(wire::pack(0, decided)); }, fail);
        return;
      }
      case do_deliver_event: {
        std::string source;
        uint64_t position = 0;
        std::string event;
        if (auto err = wire::unpack(buf, source, position, event))
          return done(err);
        self->request(local, timeout, runtime::route_atom::value, id,
                      caf::make_message(deliver_atom::value, std::move(source),
                                        position, std::move(event)))
            .then([done](bool decided) { done(wire::pack(0, decided)); }, fail);
        return;
      }
      default:
        done(runtime::make_error(
            runtime::errc::invalid_argument,
            std::string{"unknown request kind for saga "} + S::type_name));
    }
  };
  return p;
}

}  // namespace mnemo::sagas
