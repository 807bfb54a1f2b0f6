#pragma once

// The inventory aggregate (one per SKU): stock on hand, reservations per
// order, and the orders whose reservation left the warehouse.

#include <cstdint>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <variant>

#include <msgpack.hpp>

#include "mnemo/actors/effect.hpp"
#include "mnemo/runtime/message.hpp"
#include "orders_errors.hpp"

namespace orders {

// -- commands -----------------------------------------------------------------

/// Adds `quantity` (> 0) units; the first one creates the SKU.
struct add_stock {
  int64_t quantity = 0;
  MNEMO_MESSAGE(add_stock, quantity)
};
/// Holds `quantity` (> 0) units for order `order_id`.
struct reserve {
  std::string order_id;
  int64_t quantity = 0;
  MNEMO_MESSAGE(reserve, order_id, quantity)
};
/// Gives the reservation of `order_id` back (a compensation: always ok).
struct release {
  std::string order_id;
  MNEMO_MESSAGE(release, order_id)
};
/// The reserved units of `order_id` were shipped: they leave the stock.
struct commit_reservation {
  std::string order_id;
  MNEMO_MESSAGE(commit_reservation, order_id)
};

// -- events -------------------------------------------------------------------

struct inventory_stocked {
  int64_t quantity = 0;
  MNEMO_MESSAGE(inventory_stocked, quantity)
};
struct inventory_reserved {
  std::string order_id;
  int64_t quantity = 0;
  MNEMO_MESSAGE(inventory_reserved, order_id, quantity)
};
/// "inventory.released": the reservation of `order_id` (of `quantity`
/// units) was given back.
struct inventory_released {
  std::string order_id;
  int64_t quantity = 0;
  MNEMO_MESSAGE(inventory_released, order_id, quantity)
};
/// "inventory.committed": the `quantity` units reserved for `order_id`
/// left the stock.
struct inventory_committed {
  std::string order_id;
  int64_t quantity = 0;
  MNEMO_MESSAGE(inventory_committed, order_id, quantity)
};

// -- state and reply ----------------------------------------------------------

struct inventory_state {
  /// The SKU was stocked at least once.
  bool exists = false;
  /// Units in the warehouse, reserved ones included.
  int64_t on_hand = 0;
  /// Reserved units by order id.
  std::map<std::string, int64_t> reserved;
  /// Orders whose reservation was committed (shipped). Grows by one entry
  /// per shipped order: it is what makes a repeated commit harmless.
  std::set<std::string> committed;

  /// Returns the units that can still be reserved.
  int64_t available() const noexcept {
    auto result = on_hand;
    for (auto& [order_id, quantity] : reserved) result -= quantity;
    return result;
  }

  MNEMO_MESSAGE(inventory_state, exists, on_hand, reserved, committed)
};

/// What every inventory command answers: the stock after it.
struct inventory_reply {
  int64_t on_hand = 0;
  int64_t available = 0;
  MNEMO_MESSAGE(inventory_reply, on_hand, available)
};

// -- the aggregate ------------------------------------------------------------

/// The inventory aggregate. Reserving for an order that holds (or held and
/// shipped) a reservation, releasing one that holds none, and committing
/// one that was committed answer the stock and persist nothing. Errors
/// (category "orders"): `invalid_input` (a quantity <= 0, stock beyond
/// INT64_MAX, an empty order id), `unknown_sku` (reserve on a SKU never
/// stocked), `insufficient_stock` (reserve more than available),
/// `invalid_state` (commit for an order without reservation that was never
/// committed).
struct inventory {
  using state = inventory_state;
  using command = std::variant<add_stock, reserve, release, commit_reservation>;
  using event = std::variant<inventory_stocked, inventory_reserved,
                             inventory_released, inventory_committed>;
  using reply = inventory_reply;
  static constexpr const char* type_name = "inventory";

  using effect = mnemo::actors::effect<inventory>;

  static constexpr const char* event_names[] = {
      "inventory.stocked", "inventory.reserved", "inventory.released",
      "inventory.committed"};
  static constexpr const char* state_name = "inventory.state";

  static reply reply_of(const state& s) {
    return reply{s.on_hand, s.available()};
  }

  static effect decide(const state& s, const add_stock& c) {
    if (c.quantity <= 0)
      return effect::reject(errc::invalid_input,
                            "quantity " + std::to_string(c.quantity) +
                                " to add must be positive");
    if (s.on_hand > std::numeric_limits<int64_t>::max() - c.quantity)
      return effect::reject(errc::invalid_input,
                            "adding " + std::to_string(c.quantity) + " to " +
                                std::to_string(s.on_hand) +
                                " units overflows the stock");
    return effect::persist(inventory_stocked{c.quantity});
  }

  static effect decide(const state& s, const reserve& c) {
    if (c.order_id.empty() || c.quantity <= 0)
      return effect::reject(errc::invalid_input,
                            "a reservation needs an order id and a "
                            "positive quantity, got " +
                                std::to_string(c.quantity));
    if (!s.exists)
      return effect::reject(errc::unknown_sku,
                            "SKU was never stocked; add stock first");
    if (s.reserved.count(c.order_id) > 0 || s.committed.count(c.order_id) > 0)
      return effect::respond(reply_of(s));
    if (c.quantity > s.available())
      return effect::reject(errc::insufficient_stock,
                            "available " + std::to_string(s.available()) +
                                ", asked " + std::to_string(c.quantity) +
                                " for order " + c.order_id);
    return effect::persist(inventory_reserved{c.order_id, c.quantity});
  }

  static effect decide(const state& s, const release& c) {
    auto i = s.reserved.find(c.order_id);
    if (i == s.reserved.end()) return effect::respond(reply_of(s));
    return effect::persist(inventory_released{c.order_id, i->second});
  }

  static effect decide(const state& s, const commit_reservation& c) {
    auto i = s.reserved.find(c.order_id);
    if (i != s.reserved.end())
      return effect::persist(inventory_committed{c.order_id, i->second});
    if (s.committed.count(c.order_id) > 0) return effect::respond(reply_of(s));
    return effect::reject(errc::invalid_state,
                          "order " + c.order_id +
                              " holds no reservation to commit; reserve "
                              "first");
  }

  static void evolve(state& s, const inventory_stocked& e) {
    s.exists = true;
    s.on_hand += e.quantity;
  }
  static void evolve(state& s, const inventory_reserved& e) {
    s.reserved[e.order_id] = e.quantity;
  }
  static void evolve(state& s, const inventory_released& e) {
    s.reserved.erase(e.order_id);
  }
  static void evolve(state& s, const inventory_committed& e) {
    s.on_hand -= e.quantity;
    s.reserved.erase(e.order_id);
    s.committed.insert(e.order_id);
  }
};

}  // namespace orders
