#pragma once

// The shipment aggregate (one per order id): created with a tracking
// number, cancellable as a compensation.

#include <cstdint>
#include <string>
#include <variant>

#include <msgpack.hpp>

#include "mnemo/actors/effect.hpp"
#include "mnemo/runtime/message.hpp"
#include "orders_errors.hpp"

namespace orders {

/// The life cycle of a shipment.
enum class shipment_status : uint8_t {
  none = 0,
  created = 1,
  cancelled = 2,
};

/// Returns the name of `x`, e.g. "created".
inline const char* to_string(shipment_status x) noexcept {
  static constexpr const char* names[] = {"none", "created", "cancelled"};
  auto i = static_cast<size_t>(x);
  return i < sizeof(names) / sizeof(names[0]) ? names[i] : "unknown";
}

// -- commands -----------------------------------------------------------------

/// Ships `quantity` (> 0) units of `sku` under `tracking` (not empty; the
/// caller makes it, since a handler does not know its aggregate id).
struct create_shipment {
  std::string sku;
  int64_t quantity = 0;
  std::string tracking;
  MNEMO_MESSAGE(create_shipment, sku, quantity, tracking)
};
/// Cancels the shipment (a compensation: always ok).
struct cancel_shipment {
  MNEMO_EMPTY_MESSAGE(cancel_shipment)
};

// -- events -------------------------------------------------------------------

struct shipment_created {
  std::string sku;
  int64_t quantity = 0;
  std::string tracking;
  MNEMO_MESSAGE(shipment_created, sku, quantity, tracking)
};
struct shipment_cancelled {
  MNEMO_EMPTY_MESSAGE(shipment_cancelled)
};

// -- state and reply ----------------------------------------------------------

struct shipment_state {
  shipment_status status = shipment_status::none;
  std::string sku;
  int64_t quantity = 0;
  std::string tracking;
  MNEMO_MESSAGE(shipment_state, status, sku, quantity, tracking)
};

/// What every shipment command answers: tracking number and status
/// ("created", ...) after it.
struct shipment_reply {
  std::string tracking;
  std::string status;
  MNEMO_MESSAGE(shipment_reply, tracking, status)
};

}  // namespace orders

MSGPACK_ADD_ENUM(orders::shipment_status);

namespace orders {

// -- the aggregate ------------------------------------------------------------

/// The shipment aggregate. Creating a shipment that exists (also a
/// cancelled one) and cancelling one that is not created answer the
/// current tracking and status and persist nothing. Errors (category
/// "orders"): `invalid_input` (create with an empty SKU or tracking, or a
/// quantity <= 0).
struct shipment {
  using state = shipment_state;
  using command = std::variant<create_shipment, cancel_shipment>;
  using event = std::variant<shipment_created, shipment_cancelled>;
  using reply = shipment_reply;
  static constexpr const char* type_name = "shipment";

  using effect = mnemo::actors::effect<shipment>;

  static constexpr const char* event_names[] = {"shipment.created",
                                                "shipment.cancelled"};
  static constexpr const char* state_name = "shipment.state";

  static reply reply_of(const state& s) {
    return reply{s.tracking, to_string(s.status)};
  }

  static effect decide(const state& s, const create_shipment& c) {
    if (c.sku.empty() || c.tracking.empty() || c.quantity <= 0)
      return effect::reject(
          errc::invalid_input,
          "a shipment needs a SKU, a tracking number and a positive "
          "quantity, got " +
              std::to_string(c.quantity));
    if (s.status != shipment_status::none) return effect::respond(reply_of(s));
    return effect::persist(shipment_created{c.sku, c.quantity, c.tracking});
  }

  static effect decide(const state& s, const cancel_shipment&) {
    if (s.status != shipment_status::created)
      return effect::respond(reply_of(s));
    return effect::persist(shipment_cancelled{});
  }

  static void evolve(state& s, const shipment_created& e) {
    s.status = shipment_status::created;
    s.sku = e.sku;
    s.quantity = e.quantity;
    s.tracking = e.tracking;
  }
  static void evolve(state& s, const shipment_cancelled&) {
    s.status = shipment_status::cancelled;
  }
};

}  // namespace orders
