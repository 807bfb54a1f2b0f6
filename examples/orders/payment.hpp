#pragma once

// The payment aggregate (one per order id): requested from the customer,
// then captured or declined by the payment provider, refundable once
// captured.

#include <cstdint>
#include <string>
#include <variant>

#include <msgpack.hpp>

#include "mnemo/actors/effect.hpp"
#include "mnemo/runtime/message.hpp"
#include "orders_errors.hpp"

namespace orders {

/// The life cycle of a payment.
enum class payment_status : uint8_t {
  none = 0,
  requested = 1,
  captured = 2,
  declined = 3,
  refunded = 4,
};

/// Returns the name of `x`, e.g. "captured".
inline const char* to_string(payment_status x) noexcept {
  static constexpr const char* names[] = {"none", "requested", "captured",
                                          "declined", "refunded"};
  auto i = static_cast<size_t>(x);
  return i < sizeof(names) / sizeof(names[0]) ? names[i] : "unknown";
}

/// The reason a refund before capture records as decline.
constexpr const char* cancelled_before_capture = "cancelled before capture";

// -- commands -----------------------------------------------------------------

/// Asks the provider to charge `customer` `amount` (> 0, minor units).
struct request_payment {
  std::string customer;
  int64_t amount = 0;
  MNEMO_MESSAGE(request_payment, customer, amount)
};
/// The provider took the money.
struct capture_payment {
  MNEMO_EMPTY_MESSAGE(capture_payment)
};
/// The provider refused, for `reason`.
struct decline_payment {
  std::string reason;
  MNEMO_MESSAGE(decline_payment, reason)
};
/// Gives the money back (a compensation: always ok).
struct refund_payment {
  MNEMO_EMPTY_MESSAGE(refund_payment)
};

// -- events -------------------------------------------------------------------

struct payment_requested {
  std::string customer;
  int64_t amount = 0;
  MNEMO_MESSAGE(payment_requested, customer, amount)
};
struct payment_captured {
  MNEMO_EMPTY_MESSAGE(payment_captured)
};
struct payment_declined {
  std::string reason;
  MNEMO_MESSAGE(payment_declined, reason)
};
struct payment_refunded {
  MNEMO_EMPTY_MESSAGE(payment_refunded)
};

// -- state and reply ----------------------------------------------------------

struct payment_state {
  payment_status status = payment_status::none;
  std::string customer;
  int64_t amount = 0;
  /// Why the payment was declined; empty otherwise.
  std::string reason;
  MNEMO_MESSAGE(payment_state, status, customer, amount, reason)
};

/// What every payment command answers: status ("requested", ...) and amount
/// after it.
struct payment_reply {
  std::string status;
  int64_t amount = 0;
  MNEMO_MESSAGE(payment_reply, status, amount)
};

}  // namespace orders

MSGPACK_ADD_ENUM(orders::payment_status);

namespace orders {

// -- the aggregate ------------------------------------------------------------

/// The payment aggregate. A repeated request, capture, decline or refund
/// answers the current status and persists nothing; a refund of a payment
/// that is not captured persists nothing either, except for a requested
/// one: that is declined ("cancelled before capture") so that a late
/// capture from the provider is rejected. A capture of a refunded payment
/// repeats the capture that preceded the refund: ok, nothing persisted.
/// Errors (category "orders"): `invalid_input` (request with amount <= 0),
/// `invalid_state` (capture or decline before any request, capture of a
/// declined payment, decline of a captured or refunded one).
struct payment {
  using state = payment_state;
  using command = std::variant<request_payment, capture_payment,
                               decline_payment, refund_payment>;
  using event = std::variant<payment_requested, payment_captured,
                             payment_declined, payment_refunded>;
  using reply = payment_reply;
  static constexpr const char* type_name = "payment";

  using effect = mnemo::actors::effect<payment>;

  static constexpr const char* event_names[] = {
      "payment.requested", "payment.captured", "payment.declined",
      "payment.refunded"};
  static constexpr const char* state_name = "payment.state";

  static reply reply_of(const state& s) {
    return reply{to_string(s.status), s.amount};
  }

  static effect unchanged(const state& s) {
    return effect::respond(reply_of(s));
  }

  static effect decide(const state& s, const request_payment& c) {
    if (c.amount <= 0)
      return effect::reject(
          errc::invalid_input,
          "amount " + std::to_string(c.amount) + " must be positive");
    if (s.status != payment_status::none) return unchanged(s);
    return effect::persist(payment_requested{c.customer, c.amount});
  }

  static effect decide(const state& s, const capture_payment&) {
    switch (s.status) {
      case payment_status::requested:
        return effect::persist(payment_captured{});
      case payment_status::captured:
      case payment_status::refunded:
        return unchanged(s);
      default:
        return effect::reject(wrong_status(s, "capture"));
    }
  }

  static effect decide(const state& s, const decline_payment& c) {
    switch (s.status) {
      case payment_status::requested:
        return effect::persist(payment_declined{c.reason});
      case payment_status::declined:
        return unchanged(s);
      default:
        return effect::reject(wrong_status(s, "decline"));
    }
  }

  static effect decide(const state& s, const refund_payment&) {
    switch (s.status) {
      case payment_status::captured:
        return effect::persist(payment_refunded{});
      case payment_status::requested:
        return effect::persist(payment_declined{cancelled_before_capture});
      default:
        return unchanged(s);
    }
  }

  static caf::error wrong_status(const state& s, const char* what) {
    return make_error(errc::invalid_state, std::string{"cannot "} + what +
                                               " a payment that is " +
                                               to_string(s.status));
  }

  static void evolve(state& s, const payment_requested& e) {
    s.status = payment_status::requested;
    s.customer = e.customer;
    s.amount = e.amount;
  }
  static void evolve(state& s, const payment_captured&) {
    s.status = payment_status::captured;
  }
  static void evolve(state& s, const payment_declined& e) {
    s.status = payment_status::declined;
    s.reason = e.reason;
  }
  static void evolve(state& s, const payment_refunded&) {
    s.status = payment_status::refunded;
  }
};

}  // namespace orders
