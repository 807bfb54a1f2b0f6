#pragma once

// Order fulfilment as a process manager: started by "order.placed" (one
// saga per order, id = order id), it accepts the order, reserves the stock,
// requests the payment and waits for the payment provider's verdict (an
// event of the payment, routed to the saga through its inbox), ships,
// completes the order and takes the stock out of the books. A declined or late
// payment, or missing stock, releases what was reserved and cancels the order.

#include <chrono>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "entity_id.hpp"
#include "inventory.hpp"
#include "mnemo/actors/variant_codec.hpp"
#include "mnemo/runtime/message.hpp"
#include "mnemo/sagas/saga.hpp"
#include "mnemo/sagas/saga_inbox.hpp"
#include "mnemo/sagas/saga_trigger.hpp"
#include "order.hpp"
#include "orders_errors.hpp"
#include "payment.hpp"
#include "shipment.hpp"

namespace orders {

struct fulfilment_data {
  std::string order_id;
  std::string customer;
  std::string sku;
  int64_t quantity = 0;
  int64_t amount = 0;
  MNEMO_MESSAGE(fulfilment_data, order_id, customer, sku, quantity, amount)
};

/// The tracking number of an order's shipment.
inline std::string tracking_of(const std::string& order_id) {
  return "trk-" + order_id;
}

struct fulfilment {
  using data = fulfilment_data;
  static constexpr const char* type_name = "fulfilment";

  /// The steps, as a value: `payment_timeout` is how long the payment
  /// step waits for the provider's verdict (the service passes its
  /// option to `spawn_saga_registry`).
  static mnemo::sagas::definition<data> define(
      std::chrono::milliseconds payment_timeout = std::chrono::seconds{30}) {
    using mnemo::sagas::command;
    auto order_of = [](const data& d) { return d.order_id; };
    auto sku_of = [](const data& d) { return d.sku; };

    mnemo::sagas::step<data> accept;
    accept.name = "accept order";
    accept.action = command<order, data>(
        order_of, [](const data&) { return order::command{accept_order{}}; });
    accept.compensation = command<order, data>(order_of, [](const data&) {
      return order::command{cancel_order{"fulfilment failed"}};
    });

    mnemo::sagas::step<data> reserve_stock;
    reserve_stock.name = "reserve stock";
    reserve_stock.action = command<inventory, data>(sku_of, [](const data& d) {
      return inventory::command{reserve{d.order_id, d.quantity}};
    });
    reserve_stock.compensation = command<inventory, data>(
        sku_of,
        [](const data& d) { return inventory::command{release{d.order_id}}; });

    mnemo::sagas::step<data> charge;
    charge.name = "charge payment";
    charge.action = command<payment, data>(order_of, [](const data& d) {
      return payment::command{request_payment{d.customer, d.amount}};
    });
    charge.await = mnemo::sagas::await_event<payment, data>(
        [](const payment::event& ev, const data&) -> std::optional<caf::error> {
          if (std::holds_alternative<payment_captured>(ev)) return caf::error{};
          if (auto* no = std::get_if<payment_declined>(&ev))
            return make_error(errc::payment_declined, no->reason);
          return std::nullopt;
        });
    // Also runs when the verdict never came in time: a payment still
    // requested is declined, so that a late capture is refused.
    charge.compensation = command<payment, data>(order_of, [](const data&) {
      return payment::command{refund_payment{}};
    });
    charge.timeout = payment_timeout;

    mnemo::sagas::step<data> ship;
    ship.name = "ship";
    ship.action = command<shipment, data>(order_of, [](const data& d) {
      return shipment::command{
          create_shipment{d.sku, d.quantity, tracking_of(d.order_id)}};
    });
    ship.compensation = command<shipment, data>(order_of, [](const data&) {
      return shipment::command{cancel_shipment{}};
    });

    mnemo::sagas::step<data> take_stock;
    take_stock.name = "take stock out";
    take_stock.action = command<inventory, data>(sku_of, [](const data& d) {
      return inventory::command{commit_reservation{d.order_id}};
    });
    // It runs after the order completed, which nothing undoes: giving up on
    // it would compensate the earlier steps (release the stock, refund)
    // under a completed order. A transient failure (a stash full under
    // load, a restarting inventory) is retried until the inventory answers,
    // every 2 s at most; only a business rejection fails it.
    take_stock.retry.max_attempts = std::numeric_limits<uint32_t>::max();
    take_stock.retry.backoff.max_backoff = std::chrono::seconds{2};

    mnemo::sagas::step<data> complete;
    complete.name = "complete order";
    complete.action = command<order, data>(order_of, [](const data& d) {
      return order::command{complete_order{tracking_of(d.order_id)}};
    });

    // In a replicated cluster an aggregate answers `owner_unavailable`
    // while its shard fails over (the lease TTL, 2 s by default, plus a
    // poll), and a request to a leader that died times out: every step and
    // compensation retries transient failures for at least 12 attempts
    // (backoff doubling from 100 ms to 2 s) and at least 30 s before it
    // fails for good.
    for (auto* s : {&accept, &reserve_stock, &charge, &ship, &complete}) {
      s->retry.max_attempts = 12;
      s->retry.keep_transient_for = std::chrono::seconds{30};
      s->retry.backoff.max_backoff = std::chrono::seconds{2};
    }

    mnemo::sagas::definition<data> def;
    // The order completes before the stock leaves the books: an order
    // cancelled meanwhile fails "complete" and every step is undone.
    def.steps = {accept, reserve_stock, charge, ship, complete, take_stock};
    return def;
  }
};

/// The projection that starts one fulfilment per placed order.
inline mnemo::actors::projection_spec fulfilment_trigger(
    const mnemo::persistence::event_registry& types) {
  mnemo::actors::projection_filter filter;
  filter.event_types = {"order.placed"};
  return mnemo::sagas::saga_trigger<fulfilment>(
      "orders.fulfilment_trigger", filter,
      [types = &types](const mnemo::persistence::event_envelope& env)
          -> std::optional<std::pair<std::string, fulfilment_data>> {
        auto id = entity_id_of<order>(env.stream_id);
        mnemo::actors::variant_codec<order::event> codec{*types};
        auto ev = codec.decode(env);
        if (!id || !ev) return std::nullopt;
        auto* placed = std::get_if<order_placed>(&*ev);
        if (!placed) return std::nullopt;
        return std::make_pair(
            *id, fulfilment_data{*id, placed->customer, placed->sku,
                                 placed->quantity,
                                 placed->quantity * placed->unit_price});
      });
}

/// The payment provider's verdicts, and the fulfilment each concerns.
inline mnemo::actors::projection_filter verdict_filter() {
  mnemo::actors::projection_filter filter;
  filter.event_types = {"payment.captured", "payment.declined"};
  return filter;
}

inline std::optional<std::string> paid_order(
    const mnemo::persistence::event_envelope& env) {
  return entity_id_of<payment>(env.stream_id);
}

/// The projection that routes the payment provider's verdicts to the
/// fulfilment of the paid order.
inline mnemo::actors::projection_spec fulfilment_router() {
  return mnemo::sagas::saga_router<fulfilment>("orders.fulfilment_router",
                                               verdict_filter(), paid_order);
}

/// The same in cluster `c`: a copy per shard log (replicated) or member's
/// journal (static) whose rows carry the verdict (`sagas::saga_routers`).
inline std::vector<mnemo::actors::projection_spec> fulfilment_routers(
    const mnemo::runtime::cluster* c) {
  return mnemo::sagas::saga_routers<fulfilment>(
      "orders.fulfilment_router", verdict_filter(), paid_order, c);
}

}  // namespace orders
