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

#include "mnemo/runtime/error_enum.hpp"

namespace orders {

/// Rejections of order-fulfilment commands (category "orders"). Codes are
/// stored and sent over the network: append new ones, never reorder them.
MNEMO_ERROR_ENUM(errc, "orders",
                 none,
                 /// The order (or payment, shipment) exists already.
                 already_exists,
                 /// No order with this id was placed.
                 unknown_order,
                 /// The command does not fit the current status, e.g.
                 /// cancelling a completed order or capturing a declined
                 /// payment.
                 invalid_state,
                 /// A field is empty, not positive, or too large.
                 invalid_input,
                 /// The SKU has fewer units available than asked for.
                 insufficient_stock,
                 /// The SKU was never stocked.
                 unknown_sku,
                 /// The payment provider declined the payment.
                 payment_declined,
                 /// The payment was not captured (yet).
                 not_captured)

/// The category atom of `errc` errors.
constexpr caf::atom_value error_category = caf::atom("orders");

}  // namespace orders
