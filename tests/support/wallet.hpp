#pragma once

// A wallet aggregate for the library's tests: open, deposit, withdraw (no
// overdraft), close. It behaves as the bank example's account
// (examples/bank/account.hpp) does, with names of its own, so that the
// library tests do not depend on the example and the example may change
// without touching them.

#include <cstdint>
#include <string>
#include <variant>

#include "mnemo/actors/effect.hpp"
#include "mnemo/runtime/error_enum.hpp"
#include "mnemo/runtime/message.hpp"

namespace wallet_model {

// clang-format off
struct open_wallet { std::string owner; MNEMO_MESSAGE(open_wallet, owner) };
struct deposit { int64_t amount = 0; MNEMO_MESSAGE(deposit, amount) };
struct withdraw { int64_t amount = 0; MNEMO_MESSAGE(withdraw, amount) };
struct close_wallet { MNEMO_EMPTY_MESSAGE(close_wallet) };
struct wallet_opened { std::string owner;
                       MNEMO_MESSAGE(wallet_opened, owner) };
struct deposited { int64_t amount = 0; MNEMO_MESSAGE(deposited, amount) };
struct withdrawn { int64_t amount = 0; MNEMO_MESSAGE(withdrawn, amount) };
struct wallet_closed { std::string reason;
                       MNEMO_MESSAGE(wallet_closed, reason) };
/// What every wallet command answers: the balance after it.
struct wallet_reply { int64_t balance = 0;
                      MNEMO_MESSAGE(wallet_reply, balance) };
// clang-format on

struct wallet_state {
  bool exists = false;
  bool open = false;
  std::string owner;
  int64_t balance = 0;
  MNEMO_MESSAGE(wallet_state, exists, open, owner, balance)

  void apply(const wallet_opened& e) { *this = {true, true, e.owner, 0}; }
  void apply(const deposited& e) { balance += e.amount; }
  void apply(const withdrawn& e) { balance -= e.amount; }
  void apply(const wallet_closed&) { open = false; }
};

/// Rejections (category "wallet"; the codes of the bank's account_errc).
MNEMO_ERROR_ENUM(wallet_errc, "wallet", none, already_exists, unknown_wallet,
                 insufficient_funds, wallet_closed, invalid_amount)

struct wallet {
  using state = wallet_state;
  using command = std::variant<open_wallet, deposit, withdraw, close_wallet>;
  using event =
      std::variant<wallet_opened, deposited, withdrawn, wallet_closed>;
  using reply = wallet_reply;
  using effect = mnemo::actors::effect<wallet>;
  static constexpr const char* type_name = "wallet";
  static constexpr const char* event_names[] = {
      "wallet.opened", "wallet.deposited", "wallet.withdrawn", "wallet.closed"};
  static constexpr const char* state_name = "wallet.state";

  static reply reply_of(const state& s) { return reply{s.balance}; }

  static effect decide(const state& s, const open_wallet& c) {
    if (s.exists)
      return effect::reject(wallet_errc::already_exists, "wallet exists");
    return effect::persist(wallet_opened{c.owner});
  }
  static effect decide(const state& s, const deposit& c) {
    if (auto err = check(s, c.amount)) return effect::reject(err);
    return effect::persist(deposited{c.amount});
  }
  static effect decide(const state& s, const withdraw& c) {
    if (auto err = check(s, c.amount)) return effect::reject(err);
    if (s.balance < c.amount)
      return effect::reject(wallet_errc::insufficient_funds,
                            "balance " + std::to_string(s.balance) +
                                " is below " + std::to_string(c.amount));
    return effect::persist(withdrawn{c.amount});
  }
  static effect decide(const state& s, const close_wallet&) {
    if (auto err = check(s, 1)) return effect::reject(err);
    return effect::persist(wallet_closed{"closed by owner"});
  }

  static caf::error check(const state& s, int64_t amount) {
    if (!s.exists)
      return make_error(wallet_errc::unknown_wallet, "no such wallet");
    if (!s.open)
      return make_error(wallet_errc::wallet_closed, "wallet is closed");
    if (amount <= 0)
      return make_error(wallet_errc::invalid_amount,
                        "amounts are positive integers");
    return {};
  }
};

}  // namespace wallet_model
