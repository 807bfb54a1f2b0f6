#pragma once

// The bank account aggregate: open, deposit, withdraw (no overdraft), close.

#include <cstdint>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include "mnemo/actors/effect.hpp"
#include "mnemo/persistence/event_registry.hpp"
#include "mnemo/runtime/error_enum.hpp"
#include "mnemo/runtime/message.hpp"

namespace bank {

// -- commands, events, state and reply ----------------------------------------
// One declaration each (MNEMO_MESSAGE): msgpack on disk and on the wire,
// CAF's inspect, the type's name and ==.

struct open_account {
  std::string owner;
  MNEMO_MESSAGE(open_account, owner)
};
struct deposit {
  int64_t amount = 0;
  MNEMO_MESSAGE(deposit, amount)
};
struct withdraw {
  int64_t amount = 0;
  MNEMO_MESSAGE(withdraw, amount)
};
struct close_account {
  MNEMO_EMPTY_MESSAGE(close_account)
};

struct account_opened {
  std::string owner;
  MNEMO_MESSAGE(account_opened, owner)
};
struct money_deposited {
  int64_t amount = 0;
  MNEMO_MESSAGE(money_deposited, amount)
};
struct money_withdrawn {
  int64_t amount = 0;
  MNEMO_MESSAGE(money_withdrawn, amount)
};
struct account_closed {
  std::string reason;
  MNEMO_MESSAGE(account_closed, reason)
};

struct account_state {
  bool exists = false;
  bool open = false;
  std::string owner;
  int64_t balance = 0;
  MNEMO_MESSAGE(account_state, exists, open, owner, balance)
};

/// What every account command answers: the balance after it.
struct account_reply {
  int64_t balance = 0;
  MNEMO_MESSAGE(account_reply, balance)
};

/// Rejections of account commands (category "bank"; stored and sent:
/// append codes, never reorder them).
MNEMO_ERROR_ENUM(account_errc, "bank",
                 none,
                 already_exists,
                 unknown_account,
                 insufficient_funds,
                 account_closed,
                 invalid_amount)

// -- the aggregate ------------------------------------------------------------

struct account {
  using state = account_state;
  using command = std::variant<open_account, deposit, withdraw, close_account>;
  using event = std::variant<account_opened, money_deposited, money_withdrawn,
                             account_closed>;
  using reply = account_reply;
  static constexpr const char* type_name = "account";

  using effect = mnemo::actors::effect<account>;

  static void register_types(mnemo::persistence::event_registry& types) {
    types.add<account_opened>("account.opened");
    types.add<money_deposited>("account.deposited");
    types.add<money_withdrawn>("account.withdrawn");
    types.add<account_closed>("account.closed");
    types.add<account_state>("account.state");
  }

  static effect handle(const state& s, const command& cmd) {
    return std::visit([&s](const auto& c) { return on(s, c); }, cmd);
  }

  static state apply(state s, const event& ev) {
    std::visit([&s](const auto& e) { apply_to(s, e); }, ev);
    return s;
  }

 private:
  static reply balance_of(const state& s) { return reply{s.balance}; }

  static effect on(const state& s, const open_account& c) {
    if (s.exists)
      return effect::reject(
          make_error(account_errc::already_exists, "account exists"));
    return effect::persist(account_opened{c.owner}, balance_of);
  }

  static effect on(const state& s, const deposit& c) {
    if (auto err = check(s, c.amount)) return effect::reject(std::move(err));
    return effect::persist(money_deposited{c.amount}, balance_of);
  }

  static effect on(const state& s, const withdraw& c) {
    if (auto err = check(s, c.amount)) return effect::reject(std::move(err));
    if (s.balance < c.amount)
      return effect::reject(make_error(account_errc::insufficient_funds,
                                       "balance " + std::to_string(s.balance) +
                                           " is below " +
                                           std::to_string(c.amount)));
    return effect::persist(money_withdrawn{c.amount}, balance_of);
  }

  static effect on(const state& s, const close_account&) {
    if (auto err = check(s, 1)) return effect::reject(std::move(err));
    return effect::persist(account_closed{"closed by owner"}, balance_of);
  }

  static caf::error check(const state& s, int64_t amount) {
    if (!s.exists)
      return make_error(account_errc::unknown_account, "no such account");
    if (!s.open)
      return make_error(account_errc::account_closed, "account is closed");
    if (amount <= 0)
      return make_error(account_errc::invalid_amount,
                        "amounts are positive integers");
    return {};
  }

  static void apply_to(state& s, const account_opened& e) {
    s.exists = true;
    s.open = true;
    s.owner = e.owner;
  }
  static void apply_to(state& s, const money_deposited& e) {
    s.balance += e.amount;
  }
  static void apply_to(state& s, const money_withdrawn& e) {
    s.balance -= e.amount;
  }
  static void apply_to(state& s, const account_closed&) { s.open = false; }
};

}  // namespace bank
