#pragma once

// The error category "orders", shared by the order, inventory, payment and
// shipment aggregates of the order-fulfilment example.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <caf/actor_system_config.hpp>
#include <caf/atom.hpp>
#include <caf/error.hpp>
#include <caf/make_message.hpp>

#include "mnemo/runtime/error.hpp"

namespace orders {

/// Rejections of order-fulfilment commands (category "orders"). Values are
/// stored and sent over the network: never renumber them.
enum class errc : uint8_t {
  none = 0,
  /// The order (or payment, shipment) exists already.
  already_exists = 1,
  /// No order with this id was placed.
  unknown_order = 2,
  /// The command does not fit the current status, e.g. cancelling a
  /// completed order or capturing a declined payment.
  invalid_state = 3,
  /// A field is empty, not positive, or too large.
  invalid_input = 4,
  /// The SKU has fewer units available than asked for.
  insufficient_stock = 5,
  /// The SKU was never stocked.
  unknown_sku = 6,
  /// The payment provider declined the payment.
  payment_declined = 7,
  /// The payment was not captured (yet).
  not_captured = 8,
};

/// The category atom of `errc` errors.
constexpr caf::atom_value error_category = caf::atom("orders");

/// Returns an "orders" error with code `x` and `message` (what failed, on
/// which input, and what to do) as its context.
inline caf::error make_error(errc x, std::string message) {
  return caf::error{static_cast<uint8_t>(x), error_category,
                    caf::make_message(std::move(message))};
}

/// Returns whether `err` is the "orders" error `x`.
inline bool is(const caf::error& err, errc x) noexcept {
  return err.category() == error_category &&
         err.code() == static_cast<uint8_t>(x);
}

/// Returns the name of `x`, e.g. "insufficient_stock"; "unknown" for a
/// value outside the enum.
inline const char* to_string(errc x) noexcept {
  static constexpr const char* names[] = {
      "none",          "already_exists",   "unknown_order",
      "invalid_state", "invalid_input",    "insufficient_stock",
      "unknown_sku",   "payment_declined", "not_captured"};
  auto i = static_cast<size_t>(x);
  return i < sizeof(names) / sizeof(names[0]) ? names[i] : "unknown";
}

/// Lets `actor_system::render` print orders errors as "code: message", and
/// `runtime::describe` as "orders:code: message". Call once per config,
/// before the actor system starts.
inline void add_error_category(caf::actor_system_config& cfg) {
  std::vector<std::string> names;
  for (uint8_t i = 0; i <= static_cast<uint8_t>(errc::not_captured); ++i)
    names.emplace_back(to_string(static_cast<errc>(i)));
  mnemo::runtime::register_error_names(error_category, std::move(names));
  cfg.add_error_category(error_category, [](uint8_t code, caf::atom_value,
                                            const caf::message& ctx) {
    std::string text = to_string(static_cast<errc>(code));
    if (ctx.size() == 1 && ctx.match_element<std::string>(0))
      text += ": " + ctx.get_as<std::string>(0);
    return text;
  });
}

}  // namespace orders
