#pragma once

// A simulated external payment provider: an at-least-once projection over
// "payment.requested" events that captures or declines each payment by a
// deterministic coin flip, so a re-delivered event gets the same answer.

#include <cstdint>
#include <deque>
#include <memory>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/send.hpp>

#include "entity_id.hpp"
#include "mnemo/actors/aggregate_registry.hpp"
#include "mnemo/actors/projection.hpp"
#include "mnemo/persistence/error.hpp"
#include "mnemo/runtime/entity_registry.hpp"
#include "mnemo/sagas/saga.hpp"
#include "payment.hpp"

namespace orders {

/// Name of the gateway projection (its offset is stored under it).
constexpr const char* gateway_projection_name = "orders.payment_gateway";

/// The reason the gateway gives when it declines.
constexpr const char* card_declined = "card declined";

/// Settings of the simulated payment provider.
struct gateway_options {
  /// Fraction of payments declined, in [0, 1]. Default: 0 (none).
  double failure_rate = 0.0;
  /// Selects which orders fall into the declined fraction. Default: 0.
  uint64_t seed = 0;
  /// If set, decides instead of `gateway_declines`: returns true to
  /// decline the payment of the order with this id. Must be deterministic
  /// (events may be delivered again). Default: unset.
  std::function<bool(const std::string& order_id)> decide;
};

/// Returns whether the provider declines the payment of `order_id`: a
/// 64-bit FNV-1a hash of `seed` and the id, mixed and mapped to [0, 1), is
/// below `failure_rate`. The same arguments give the same answer on every
/// platform and run. A rate <= 0 (or NaN) never declines, >= 1 always does.
inline bool gateway_declines(const std::string& order_id, double failure_rate,
                             uint64_t seed) {
  if (!(failure_rate > 0.0)) return false;
  if (failure_rate >= 1.0) return true;
  uint64_t h = 14695981039346656037ull;
  auto add = [&h](uint8_t byte) {
    h ^= byte;
    h *= 1099511628211ull;
  };
  for (int i = 0; i < 8; ++i) add(static_cast<uint8_t>(seed >> (8 * i)));
  for (char c : order_id) add(static_cast<uint8_t>(c));
  // splitmix64's finalizer: FNV's low bits alone are poorly mixed.
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebull;
  h ^= h >> 31;
  auto unit = static_cast<double>(h >> 11) * 0x1.0p-53;
  return unit < failure_rate;
}

/// Returns the command id the gateway sends its decision on payment stream
/// `payment_stream` with: "<payment stream>/gateway". Capture and decline
/// share it, so whatever is sent again is applied at most once.
inline std::string gateway_command_id(const std::string& payment_stream) {
  return payment_stream + "/gateway";
}

/// Returns the gateway projection: for each "payment.requested" event of a
/// payment stream it sends `capture_payment` or `decline_payment{"card
/// declined"}` as `(route_atom, order id, command_message)` to `payments`,
/// the entity registry of the payment aggregate, with the command id of
/// `gateway_command_id`. The send is fire-and-forget (`anon_send`): the
/// aggregate's answer, e.g. `invalid_state` for a capture after a refund,
/// is dropped, and events handled again after a crash send again (the
/// command id makes that harmless). A payment stream without an order id
/// fails the event with `invalid_argument`, which the projection parks as
/// a dead letter after its retries.
inline mnemo::actors::projection_spec payment_gateway(
    caf::actor payments, gateway_options options = {}) {
  namespace pers = mnemo::persistence;
  mnemo::actors::projection_spec spec;
  spec.name = gateway_projection_name;
  spec.filter.event_types = {"payment.requested"};
  spec.filter.stream_prefix = std::string{payment::type_name} + "-";
  spec.options.on_failure = mnemo::actors::failure_strategy::retry_then_skip;
  spec.effect = [payments = std::move(payments), options = std::move(options)](
                    const std::vector<pers::event_envelope>& events) {
    if (!payments)
      return pers::error{pers::errc::invalid_argument,
                         "the payment gateway has no payment registry"};
    for (auto& env : events) {
      auto id = entity_id_of<payment>(env.stream_id);
      if (!id)
        return pers::error{pers::errc::invalid_argument,
                           "stream '" + env.stream_id +
                               "' is not a payment stream of an order"};
      bool declines =
          options.decide
              ? options.decide(*id)
              : gateway_declines(*id, options.failure_rate, options.seed);
      payment::command cmd = capture_payment{};
      if (declines) cmd = decline_payment{card_declined};
      caf::anon_send(payments, mnemo::runtime::route_atom::value, *id,
                     mnemo::actors::command_message<payment>(
                         std::move(cmd), gateway_command_id(env.stream_id)));
    }
    return pers::error{};
  };
  return spec;
}

/// `(gateway_retry_atom, order id, command message, attempt)`: the
/// sender's own retry of a decision.
using gateway_retry_atom = caf::atom_constant<caf::atom("o_gretry")>;

/// Decisions the gateway sender keeps in flight at most; the rest wait in
/// its queue (a gateway copy replaying from offset 0 hands it every past
/// decision at once).
constexpr size_t gateway_in_flight = 64;

/// Spawns the actor that carries the gateway's decisions to `payments` in
/// a cluster, where the payment's shard may be changing leaders: it takes
/// `(route_atom, order id, command message)` like the registry, sends it
/// as a request (at most `gateway_in_flight` at once, the rest queued in
/// order) and sends it again 250 ms after each transient error
/// (`sagas::transient_error`: no leader yet, an unreachable member, a
/// restarting entity), for up to `attempts` tries, each waiting up to 2 s
/// for its answer (so a partitioned leader holding every slot still lets
/// 32 decisions a second through). A retry queues behind what waits. Any other answer ends it: the decision's command id
/// makes a repeat harmless, and a business rejection (a capture after a
/// refund) is final. Without it, a decision sent while the shard had no
/// leader would be lost and the fulfilment would wait for its payment
/// timeout. What it holds is lost when it stops: the other members' gateway
/// copies send the same decisions. Stop it with an exit message.
inline caf::actor spawn_gateway_sender(caf::actor_system& sys,
                                       caf::actor payments,
                                       uint32_t attempts = 120) {
  struct decision {
    std::string id;
    caf::message msg;
    uint32_t attempt;
  };
  struct sender_state {
    std::deque<decision> queued;
    size_t in_flight = 0;
  };
  return sys.spawn([payments, attempts](
                       caf::stateful_actor<sender_state>* self) -> caf::behavior {
    // Sends queued decisions while fewer than the cap are out.
    auto pump = std::make_shared<std::function<void()>>();
    std::weak_ptr<std::function<void()>> weak_pump = pump;
    *pump = [self, payments, attempts, weak_pump] {
      auto& st = self->state;
      while (st.in_flight < gateway_in_flight && !st.queued.empty()) {
        auto d = std::move(st.queued.front());
        st.queued.pop_front();
        ++st.in_flight;
        auto done = [self, weak_pump] {
          --self->state.in_flight;
          if (auto p = weak_pump.lock()) (*p)();
        };
        self->request(payments, std::chrono::seconds{2},
                      mnemo::runtime::route_atom::value, d.id, d.msg)
            .then([done](payment::reply&) { done(); },
                  [self, d, attempts, done](caf::error& err) {
                    if (d.attempt + 1 < attempts &&
                        mnemo::sagas::transient_error(err))
                      self->delayed_send(self, std::chrono::milliseconds{250},
                                         gateway_retry_atom::value, d.id,
                                         d.msg, d.attempt + 1);
                    done();
                  });
      }
    };
    return {
        [self, pump](mnemo::runtime::route_atom, std::string& id,
                     caf::message& msg) {
          self->state.queued.push_back({std::move(id), std::move(msg), 0});
          (*pump)();
        },
        [self, pump](gateway_retry_atom, std::string& id, caf::message& msg,
                     uint32_t attempt) {
          self->state.queued.push_back({std::move(id), std::move(msg), attempt});
          (*pump)();
        },
    };
  });
}

}  // namespace orders
