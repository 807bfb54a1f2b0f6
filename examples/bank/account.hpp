#pragma once

// The bank account aggregate: open, deposit, withdraw (no overdraft), close.

#include <cstdint>
#include <string>
#include <variant>

#include "mnemo/actors/effect.hpp"
#include "mnemo/runtime/error_enum.hpp"
#include "mnemo/runtime/message.hpp"

namespace bank {

// MNEMO_MESSAGE: msgpack (disk and wire), CAF's inspect, the name and ==.
// clang-format off
struct open_account { std::string owner; MNEMO_MESSAGE(open_account, owner) };
struct deposit { int64_t amount = 0; MNEMO_MESSAGE(deposit, amount) };
struct withdraw { int64_t amount = 0; MNEMO_MESSAGE(withdraw, amount) };
struct close_account { MNEMO_EMPTY_MESSAGE(close_account) };
struct account_opened { std::string owner;
                        MNEMO_MESSAGE(account_opened, owner) };
struct money_deposited { int64_t amount = 0;
                         MNEMO_MESSAGE(money_deposited, amount) };
struct money_withdrawn { int64_t amount = 0;
                         MNEMO_MESSAGE(money_withdrawn, amount) };
struct account_closed { std::string reason;
                        MNEMO_MESSAGE(account_closed, reason) };
/// What every account command answers: the balance after it.
struct account_reply { int64_t balance = 0;
                       MNEMO_MESSAGE(account_reply, balance) };
// clang-format on

struct account_state {
  bool exists = false;
  bool open = false;
  std::string owner;
  int64_t balance = 0;
  MNEMO_MESSAGE(account_state, exists, open, owner, balance)

  void apply(const account_opened& e) { *this = {true, true, e.owner, 0}; }
  void apply(const money_deposited& e) { balance += e.amount; }
  void apply(const money_withdrawn& e) { balance -= e.amount; }
  void apply(const account_closed&) { open = false; }
};

/// Rejections (category "bank"; stored and sent: append, never reorder).
MNEMO_ERROR_ENUM(account_errc, "bank", none, already_exists, unknown_account,
                 insufficient_funds, account_closed, invalid_amount)

struct account {
  using state = account_state;
  using command = std::variant<open_account, deposit, withdraw, close_account>;
  using event = std::variant<account_opened, money_deposited, money_withdrawn,
                             account_closed>;
  using reply = account_reply;
  using effect = mnemo::actors::effect<account>;
  static constexpr const char* type_name = "account";
  static constexpr const char* event_names[] = {
      "account.opened", "account.deposited", "account.withdrawn",
      "account.closed"};
  static constexpr const char* state_name = "account.state";

  static reply reply_of(const state& s) { return reply{s.balance}; }

  static effect decide(const state& s, const open_account& c) {
    if (s.exists)
      return effect::reject(account_errc::already_exists, "account exists");
    return effect::persist(account_opened{c.owner});
  }
  static effect decide(const state& s, const deposit& c) {
    if (auto err = check(s, c.amount)) return effect::reject(err);
    return effect::persist(money_deposited{c.amount});
  }
  static effect decide(const state& s, const withdraw& c) {
    if (auto err = check(s, c.amount)) return effect::reject(err);
    if (s.balance < c.amount)
      return effect::reject(account_errc::insufficient_funds,
                            "balance " + std::to_string(s.balance) +
                                " is below " + std::to_string(c.amount));
    return effect::persist(money_withdrawn{c.amount});
  }
  static effect decide(const state& s, const close_account&) {
    if (auto err = check(s, 1)) return effect::reject(err);
    return effect::persist(account_closed{"closed by owner"});
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
};

}  // namespace bank
