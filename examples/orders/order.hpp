#pragma once

// The order aggregate (one per order id): placed, then accepted, then
// completed with a tracking number; cancellable until it is completed.

#include <cstdint>
#include <string>
#include <variant>

#include <msgpack.hpp>

#include "mnemo/actors/effect.hpp"
#include "mnemo/runtime/message.hpp"
#include "orders_errors.hpp"

namespace orders {

/// The life cycle of an order; `none` until it is placed.
enum class order_status : uint8_t {
  none = 0,
  placed = 1,
  accepted = 2,
  completed = 3,
  cancelled = 4,
};

/// Returns the name of `x`, e.g. "accepted".
inline const char* to_string(order_status x) noexcept {
  static constexpr const char* names[] = {"none", "placed", "accepted",
                                          "completed", "cancelled"};
  auto i = static_cast<size_t>(x);
  return i < sizeof(names) / sizeof(names[0]) ? names[i] : "unknown";
}

/// Largest amount (quantity * unit price, in minor units) of one order.
constexpr int64_t max_order_amount = 1'000'000'000'000;

// -- commands -----------------------------------------------------------------

/// Places a new order. Quantity and unit price (minor units) are positive,
/// their product at most `max_order_amount`; customer and SKU not empty.
struct place_order {
  std::string customer;
  std::string sku;
  int64_t quantity = 0;
  int64_t unit_price = 0;
  MNEMO_MESSAGE(place_order, customer, sku, quantity, unit_price)
};
/// Accepts a placed order (the saga reserved stock and took payment).
struct accept_order {
  MNEMO_EMPTY_MESSAGE(accept_order)
};
/// Completes an accepted order: it was shipped with `tracking`.
struct complete_order {
  std::string tracking;
  MNEMO_MESSAGE(complete_order, tracking)
};
/// Cancels an order that is not completed.
struct cancel_order {
  std::string reason;
  MNEMO_MESSAGE(cancel_order, reason)
};

// -- events -------------------------------------------------------------------

struct order_placed {
  std::string customer;
  std::string sku;
  int64_t quantity = 0;
  int64_t unit_price = 0;
  MNEMO_MESSAGE(order_placed, customer, sku, quantity, unit_price)
};
struct order_accepted {
  MNEMO_EMPTY_MESSAGE(order_accepted)
};
struct order_completed {
  std::string tracking;
  MNEMO_MESSAGE(order_completed, tracking)
};
struct order_cancelled {
  std::string reason;
  MNEMO_MESSAGE(order_cancelled, reason)
};

// -- state and reply ----------------------------------------------------------

struct order_state {
  bool exists = false;
  order_status status = order_status::none;
  std::string customer;
  std::string sku;
  int64_t quantity = 0;
  int64_t unit_price = 0;
  std::string tracking;
  std::string reason;

  /// Returns quantity * unit price (at most `max_order_amount`).
  int64_t amount() const noexcept { return quantity * unit_price; }

  MNEMO_MESSAGE(order_state, exists, status, customer, sku, quantity,
                unit_price, tracking, reason)
};

/// What every order command answers: the status after it ("placed", ...).
struct order_reply {
  std::string status;
  MNEMO_MESSAGE(order_reply, status)
};

}  // namespace orders

MSGPACK_ADD_ENUM(orders::order_status);

namespace orders {

// -- the aggregate ------------------------------------------------------------

/// The order aggregate. Repeating a command whose effect already happened
/// (accept an accepted order, complete a completed one, cancel a cancelled
/// one) answers the status and persists nothing, so compensations and
/// retries with new command ids are safe. Errors (category "orders"):
/// `already_exists` (place twice), `invalid_input` (place with an empty
/// customer or SKU, a quantity or unit price <= 0, or an amount above
/// `max_order_amount`), `unknown_order` (any other command before place),
/// `invalid_state` (accept or complete out of order, complete a cancelled
/// order, cancel a completed one).
struct order {
  using state = order_state;
  using command =
      std::variant<place_order, accept_order, complete_order, cancel_order>;
  using event = std::variant<order_placed, order_accepted, order_completed,
                             order_cancelled>;
  using reply = order_reply;
  static constexpr const char* type_name = "order";

  using effect = mnemo::actors::effect<order>;

  static constexpr const char* event_names[] = {
      "order.placed", "order.accepted", "order.completed", "order.cancelled"};
  static constexpr const char* state_name = "order.state";

  static reply reply_of(const state& s) { return reply{to_string(s.status)}; }

  static effect unchanged(const state& s) {
    return effect::respond(reply_of(s));
  }

  static effect decide(const state& s, const place_order& c) {
    if (s.exists)
      return effect::reject(
          errc::already_exists,
          std::string{"order exists with status "} + to_string(s.status));
    if (c.customer.empty() || c.sku.empty())
      return effect::reject(errc::invalid_input,
                            "an order needs a customer and a SKU");
    if (c.quantity <= 0 || c.unit_price <= 0)
      return effect::reject(
          errc::invalid_input,
          "quantity " + std::to_string(c.quantity) + " and unit price " +
              std::to_string(c.unit_price) + " must be positive");
    // Division instead of multiplication: the product may overflow.
    if (c.quantity > max_order_amount / c.unit_price)
      return effect::reject(
          errc::invalid_input,
          "quantity " + std::to_string(c.quantity) + " * unit price " +
              std::to_string(c.unit_price) + " exceeds the order limit " +
              std::to_string(max_order_amount));
    return effect::persist(
        order_placed{c.customer, c.sku, c.quantity, c.unit_price});
  }

  static effect decide(const state& s, const accept_order&) {
    if (auto err = check_exists(s)) return effect::reject(std::move(err));
    if (s.status == order_status::accepted) return unchanged(s);
    if (s.status != order_status::placed)
      return effect::reject(wrong_status(s, "accept"));
    return effect::persist(order_accepted{});
  }

  static effect decide(const state& s, const complete_order& c) {
    if (auto err = check_exists(s)) return effect::reject(std::move(err));
    if (s.status == order_status::completed) return unchanged(s);
    if (s.status != order_status::accepted)
      return effect::reject(wrong_status(s, "complete"));
    return effect::persist(order_completed{c.tracking});
  }

  static effect decide(const state& s, const cancel_order& c) {
    if (auto err = check_exists(s)) return effect::reject(std::move(err));
    if (s.status == order_status::cancelled) return unchanged(s);
    if (s.status == order_status::completed)
      return effect::reject(wrong_status(s, "cancel"));
    return effect::persist(order_cancelled{c.reason});
  }

  static caf::error check_exists(const state& s) {
    if (s.exists) return {};
    return make_error(errc::unknown_order, "no such order; place it first");
  }

  static caf::error wrong_status(const state& s, const char* what) {
    return make_error(errc::invalid_state, std::string{"cannot "} + what +
                                               " an order that is " +
                                               to_string(s.status));
  }

  static void evolve(state& s, const order_placed& e) {
    s.exists = true;
    s.status = order_status::placed;
    s.customer = e.customer;
    s.sku = e.sku;
    s.quantity = e.quantity;
    s.unit_price = e.unit_price;
  }
  static void evolve(state& s, const order_accepted&) {
    s.status = order_status::accepted;
  }
  static void evolve(state& s, const order_completed& e) {
    s.status = order_status::completed;
    s.tracking = e.tracking;
  }
  static void evolve(state& s, const order_cancelled& e) {
    s.status = order_status::cancelled;
    s.reason = e.reason;
  }
};

}  // namespace orders
